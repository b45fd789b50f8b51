"""Prices: Price List documents (shaped like GetProducts' answer) through botocore's Stubber,
the disk cache and its age, the shipped table's promises, price-file checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import pricing
from helpers.aws import stubbed

from closeup_ops.errors import UsageError
from closeup_ops.ops.aws import prices

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
REGION = "ap-south-1"


@pytest.fixture(autouse=True)
def cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def answer(stub, engine="Redis", serverless=None, nodes=None):
    pricing.add_answers(
        stub,
        REGION,
        engine,
        serverless
        if serverless is not None
        else pricing.serverless_products(REGION, engine, "0.1500000000", "0.0000000041"),
        nodes
        if nodes is not None
        else pricing.node_products(
            REGION, engine, {"cache.t4g.small": ("0.0440000000", "1.37 GiB")}
        ),
    )


def test_on_demand_prices_units_and_memory(cache_home):
    client, stub = stubbed("pricing", "ap-south-1")
    answer(stub)
    with stub:
        book = prices.price_book(None, REGION, "redis", client=client, now=NOW)
    assert (
        book.origin == "price-list-api" and book.label == "AWS Price List API, fetched 2026-12-01"
    )
    assert book.gb_hour.usd == 0.15 and book.gb_hour.unit == "GB-hour"
    # 0.0000000041 USD per ECPU is 0.0041 USD per million
    assert book.ecpu_million.usd == pytest.approx(0.0041)
    node = book.nodes["cache.t4g.small"]
    assert node.hourly.usd == 0.044  # the on-demand term, not the reserved one (0.001)
    assert node.memory_gib == 1.37
    # kept on disk with its date
    saved = json.loads((cache_home / "closeup-ops" / "prices-ap-south-1-redis.json").read_text())
    assert saved["fetched"].startswith("2026-12-01")


def test_a_fresh_cache_is_used_a_stale_one_refetched(cache_home):
    client, stub = stubbed("pricing", "ap-south-1")
    answer(stub)
    with stub:
        prices.price_book(None, REGION, "redis", client=client, now=NOW)
    idle, idle_stub = stubbed("pricing", "ap-south-1")
    with idle_stub:  # no answer stubbed: a call would fail the test
        book = prices.price_book(None, REGION, "redis", client=idle, now=NOW + dt.timedelta(days=6))
    assert book.label.endswith("(cached)") and book.gb_hour.usd == 0.15
    again, again_stub = stubbed("pricing", "ap-south-1")
    answer(
        again_stub, serverless=pricing.serverless_products(REGION, "Redis", "0.2", "0.000000005")
    )
    with again_stub:
        book = prices.price_book(
            None, REGION, "redis", client=again, now=NOW + dt.timedelta(days=8)
        )
    again_stub.assert_no_pending_responses()
    assert book.gb_hour.usd == 0.2 and "(cached)" not in book.label


def test_no_products_falls_back_to_the_table_and_says_so():
    client, stub = stubbed("pricing", "ap-south-1")
    answer(stub, serverless=[], nodes=[])
    with stub:
        book = prices.price_book(None, REGION, "redis", client=client, now=NOW)
    assert book.origin == "shipped-table"
    assert book.notes[0] == "AWS Price List API has no redis products for ap-south-1"
    assert book.gb_hour is None  # the shipped table has no ap-south-1 prices either
    assert "shipped table has no redis prices for ap-south-1" in book.notes


def test_nodes_only_answer_takes_serverless_prices_from_the_table():
    client, stub = stubbed("pricing", "us-east-1")
    pricing.add_answers(
        stub,
        "us-east-1",
        "Valkey",
        [],
        pricing.node_products("us-east-1", "Valkey", {"cache.t4g.small": ("0.0256", "1.37 GiB")}),
    )
    with stub:
        book = prices.price_book(None, "us-east-1", "valkey", client=client, now=NOW)
    table = json.loads(prices.TABLE.read_text())["regions"]["us-east-1"]["valkey"]["serverless"]
    assert book.origin == "price-list-api" and book.nodes["cache.t4g.small"].hourly.usd == 0.0256
    assert book.gb_hour.usd == table["gb_hour"] and book.gb_hour.source == table["source"]
    assert any("had no serverless gb_hour price" in n for n in book.notes)


def test_pricing_endpoints():
    assert prices.pricing_endpoint("ap-south-1") == "ap-south-1"
    assert prices.pricing_endpoint("ap-southeast-2") == "ap-south-1"
    assert prices.pricing_endpoint("eu-west-1") == "eu-central-1"
    assert prices.pricing_endpoint("us-west-2") == "us-east-1"
    assert prices.pricing_endpoint("sa-east-1") == "us-east-1"


def test_shipped_table_says_its_date_regions_and_sources():
    doc = json.loads(prices.TABLE.read_text())
    assert doc["as_of"] and doc["currency"] == "USD"
    for region, engines in doc["regions"].items():
        for engine, entry in engines.items():
            serverless = entry.get("serverless") or {}
            if serverless:
                assert serverless.get("source"), (region, engine)
            for node_type, node in (entry.get("nodes") or {}).items():
                assert node.get("source"), (region, engine, node_type)
    book = prices.from_table(doc, "us-east-1", "redis", "shipped-table", "shipped table")
    assert book.label.startswith(f"list prices as of {doc['as_of']} (shipped table; regions: ")


def test_price_file_problems_are_usage_errors(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(
        json.dumps({"regions": {"us-east-1": {"redis": {"serverless": {"gb_hour": "x"}}}}})
    )
    with pytest.raises(UsageError, match="not a number"):
        prices.price_book(None, "us-east-1", "redis", price_file=str(bad))
    bad.write_text(json.dumps({"prices": []}))
    with pytest.raises(UsageError, match='has no "regions" object'):
        prices.price_book(None, "us-east-1", "redis", price_file=str(bad))


@pytest.mark.parametrize("status", [500, 200])
def test_an_endpoint_that_is_not_the_price_list_is_one_short_note(status):
    """AWS_ENDPOINT_URL at a stand-in (the sandbox's moto answers 500 with an HTML page):
    the table is used and the note is one short line, no HTML on the terminal."""
    import http.server
    import threading

    import botocore.session

    page = b"<!doctype html><html><title>500 Internal Server Error</title>" + b"x" * 2000

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = botocore.session.get_session().create_client(
            "pricing",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        client.meta.events.register("needs-retry.*", lambda **_: None)
        book = prices.price_book(None, "us-east-1", "redis", client=client, now=NOW)
    finally:
        server.shutdown()
        server.server_close()
    assert book.origin == "shipped-table"
    note = next(n for n in book.notes if "Price List API" in n)
    assert "<" not in note and "xxxx" not in note and len(note) < 200, note
