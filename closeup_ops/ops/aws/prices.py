"""ElastiCache list prices for one region and engine: serverless (USD per GB-hour of data
stored, USD per million ECPUs) and on-demand nodes (USD per node-hour, with the node's
memory), and where each number came from.

Sources, first that answers:
1. `--price-file F`: a file in the shipped table's format (closeup_ops/data/prices.json).
2. The AWS Price List API (service code AmazonElastiCache) through botocore's `pricing`
   client, served only from us-east-1, ap-south-1 and eu-central-1. GetProducts answers a
   `PriceList` of JSON strings, one product each:
   {"product": {"productFamily", "attributes": {regionCode, cacheEngine, instanceType,
   memory, usagetype, ...}}, "terms": {"OnDemand": {TERM: {"priceDimensions": {RATE:
   {"unit", "pricePerUnit": {"USD": "0.0340000000"}}}}}}, ...}. Answers are kept on disk
   under $XDG_CACHE_HOME/closeup-ops/ with the date they were fetched.
3. The table shipped with the tool, with its as-of date and the regions it covers.

A price that no source has is None: the caller names it and leaves its line out.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closeup_ops.errors import UsageError
from closeup_ops.ops.aws import price_cache

SERVICE_CODE = "AmazonElastiCache"
# The Price List API's own endpoints; any of them answers for every region.
PRICING_ENDPOINTS = ("us-east-1", "ap-south-1", "eu-central-1")
# ElastiCache engine name -> the Price List's cacheEngine attribute value
PRICE_LIST_ENGINE = {"redis": "Redis", "valkey": "Valkey", "memcached": "Memcached"}
SERVERLESS_FAMILY = "ElastiCache Serverless"
NODE_FAMILY = "Cache Instance"
TABLE = Path(__file__).resolve().parents[2] / "data" / "prices.json"


@dataclass
class Price:
    usd: float
    unit: str  # what one unit is: "GB-hour", "million ECPUs", "node-hour"
    source: str  # where the number came from, for the output


@dataclass
class NodePrice:
    node_type: str
    hourly: Price
    memory_gib: float | None


@dataclass
class PriceBook:
    region: str
    engine: str
    origin: str  # "price-file" | "price-list-api" | "shipped-table"
    label: str  # said on the output: "list prices as of 2026-06 (shipped table)"
    as_of: str | None
    gb_hour: Price | None = None
    ecpu_million: Price | None = None
    nodes: dict[str, NodePrice] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def missing(self, what: str) -> str:
        return f"no {what} price for {self.engine} in {self.region} ({self.label})"


# --- the table format (shipped table and --price-file) -----------------------------------


def load_table(path: Path, flag: str = "--price-file") -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file", "give the path of a price file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{flag} {path} is not a price file ({exc})",
            "use the format of closeup_ops/data/prices.json",
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), dict):
        raise UsageError(
            f'{flag} {path} has no "regions" object',
            "use the format of closeup_ops/data/prices.json",
        )
    return doc


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"price {where} is not a number: {value!r}", "fix the price file"
        ) from None
    if number < 0 or number != number:
        raise UsageError(f"price {where} is negative or not a number", "fix the price file")
    return number


def book_from_entry(
    entry: dict[str, Any], region: str, engine: str, origin: str, label: str, as_of: str | None
) -> PriceBook:
    """A PriceBook from one regions[region][engine] entry of the table format."""
    book = PriceBook(region, engine, origin, label, as_of)
    serverless = entry.get("serverless") or {}
    where = f"{region}/{engine}"
    if "gb_hour" in serverless:
        book.gb_hour = Price(
            _number(serverless["gb_hour"], f"{where} gb_hour"),
            "GB-hour",
            serverless.get("source", label),
        )
    if "ecpu_million" in serverless:
        book.ecpu_million = Price(
            _number(serverless["ecpu_million"], f"{where} ecpu_million"),
            "million ECPUs",
            serverless.get("source", label),
        )
    for node_type, node in (entry.get("nodes") or {}).items():
        if not isinstance(node, dict) or "hourly" not in node:
            continue
        memory = node.get("memory_gib")
        book.nodes[node_type] = NodePrice(
            node_type,
            Price(
                _number(node["hourly"], f"{where} {node_type}"),
                "node-hour",
                node.get("source", label),
            ),
            None if memory is None else _number(memory, f"{where} {node_type} memory_gib"),
        )
    return book


def from_table(doc: dict[str, Any], region: str, engine: str, origin: str, name: str) -> PriceBook:
    as_of = doc.get("as_of")
    regions = sorted(doc.get("regions", {}))
    label = (
        f"list prices as of {as_of or 'an unknown date'} ({name}; regions: "
        + (", ".join(regions) or "none")
        + ")"
    )
    entry = (doc.get("regions", {}).get(region) or {}).get(engine)
    if entry is None:
        book = PriceBook(region, engine, origin, label, as_of)
        book.notes.append(f"{name} has no {engine} prices for {region}")
        return book
    return book_from_entry(entry, region, engine, origin, label, as_of)


# --- the Price List API ------------------------------------------------------------------


def pricing_endpoint(region: str) -> str:
    """The Price List endpoint nearest the cache's region."""
    if region.startswith("ap-"):
        return "ap-south-1"
    if region.startswith(("eu-", "me-", "af-", "il-")):
        return "eu-central-1"
    return "us-east-1"


def pricing_client(settings: Any, region: str) -> Any:
    """A botocore `pricing` client on the Price List endpoint for `region`."""
    from botocore.config import Config

    from closeup_ops.connect.aws import aws_session

    session = aws_session(settings)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=settings.timeout,
        read_timeout=max(settings.timeout, 30),
    )
    return session.create_client("pricing", region_name=pricing_endpoint(region), config=config)


def _filters(region: str, engine: str, family: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "cacheEngine", "Value": PRICE_LIST_ENGINE[engine]},
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": family},
    ]


def _products(client: Any, filters: list[dict[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ServiceCode": SERVICE_CODE, "Filters": filters, "MaxResults": 100}
    while True:
        page = client.get_products(**kwargs)
        out += [json.loads(item) for item in page.get("PriceList", [])]
        if not page.get("NextToken"):
            return out
        kwargs["NextToken"] = page["NextToken"]


def on_demand(product: dict[str, Any]) -> tuple[float, str] | None:
    """(USD per unit, unit) of the product's on-demand price: the first dimension of its
    OnDemand term that starts at 0 (the Price List's tiers begin at beginRange "0")."""
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        dims = list((term.get("priceDimensions") or {}).values())
        dims.sort(key=lambda d: float(d.get("beginRange", "0") or 0))
        for dim in dims:
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is not None:
                return float(usd), str(dim.get("unit", ""))
    return None


def _memory_gib(text: str | None) -> float | None:
    """The Price List's memory attribute, "13.07 GiB", as 13.07."""
    if not text:
        return None
    number = text.split()[0].replace(",", "")
    try:
        return float(number)
    except ValueError:
        return None


def entry_from_price_list(
    serverless: list[dict[str, Any]], nodes: list[dict[str, Any]], source: str
) -> dict[str, Any]:
    """The table-format entry for one region and engine from GetProducts documents.

    Serverless products are told apart by their usagetype (the billing codes are
    `CachedData` for data stored and `ElastiCacheProcessingUnits` for ECPUs, with a region
    prefix). The ECPU price is converted to USD per million ECPUs when the Price List states
    it per ECPU. Node products are the `NodeUsage:<instanceType>` usage type."""
    entry: dict[str, Any] = {"serverless": {}, "nodes": {}}
    for product in serverless:
        attrs = product.get("product", {}).get("attributes", {})
        usage = attrs.get("usagetype", "")
        price = on_demand(product)
        if price is None:
            continue
        usd, unit = price
        if "CachedData" in usage or unit.lower().startswith("gb"):
            entry["serverless"]["gb_hour"] = usd
        elif "ProcessingUnits" in usage or "ecpu" in unit.lower():
            per_million = "million" in unit.lower() or unit.strip().upper() in ("M", "MECPU")
            entry["serverless"]["ecpu_million"] = usd if per_million else usd * 1_000_000
    for product in nodes:
        attrs = product.get("product", {}).get("attributes", {})
        node_type = attrs.get("instanceType")
        usage = attrs.get("usagetype", "")
        if not node_type or not usage.split(":")[0].endswith("NodeUsage"):
            continue
        price = on_demand(product)
        if price is None or price[0] <= 0:
            continue
        entry["nodes"][node_type] = {
            "hourly": price[0],
            "memory_gib": _memory_gib(attrs.get("memory")),
        }
    if entry["serverless"]:
        entry["serverless"]["source"] = source
    for node in entry["nodes"].values():
        node["source"] = source
    return entry


def fetch_price_list(client: Any, region: str, engine: str, source: str) -> dict[str, Any]:
    return entry_from_price_list(
        _products(client, _filters(region, engine, SERVERLESS_FAMILY)),
        _products(client, _filters(region, engine, NODE_FAMILY)),
        source,
    )


def _api_failure(exc: BaseException) -> str | None:
    """Why the Price List API could not be used, or None for an exception that is a bug."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no AWS credentials"
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code:
        return f"{code}: {_short(getattr(exc, 'response', {}).get('Error', {}).get('Message', ''))}"
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover
        return None
    # ResponseParserError: an endpoint that is not the Price List (AWS_ENDPOINT_URL to a
    # stand-in such as the sandbox's moto) answered something botocore cannot parse
    if name == "ResponseParserError":
        return "the endpoint's answer is not a Price List API response"
    if isinstance(exc, BotoCoreError) or name == "NotImplementedError":
        return f"{name}: {_short(str(exc))}"
    return None


def _short(text: str) -> str:
    """One short line of a server's message: never a page of HTML on the terminal."""
    text = text.strip()
    if text.startswith("<"):
        return "an HTML page"
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= 160 else first[:157] + "..."


def price_book(
    settings: Any,
    region: str,
    engine: str,
    price_file: str | None = None,
    client: Any | None = None,
    now: dt.datetime | None = None,
) -> PriceBook:
    """The prices for `region` and `engine` from the first source that has them."""
    engine = engine.lower()
    if price_file:
        doc = load_table(Path(price_file))
        return from_table(doc, region, engine, "price-file", f"price file {price_file}")
    now = now or dt.datetime.now(dt.timezone.utc)
    notes: list[str] = []
    if engine in PRICE_LIST_ENGINE:
        cached = price_cache.read(region, engine, now)
        if cached is not None:
            fetched = cached["fetched"][:10]
            label = f"AWS Price List API, fetched {fetched} (cached)"
            entry = cached["entry"]
            return _fill_serverless(
                book_from_entry(entry, region, engine, "price-list-api", label, fetched)
            )
        try:
            client = client or pricing_client(settings, region)
            fetched = now.date().isoformat()
            label = f"AWS Price List API, fetched {fetched}"
            entry = fetch_price_list(client, region, engine, label)
        except Exception as exc:
            why = _api_failure(exc)
            if why is None:
                raise
            notes.append(f"AWS Price List API not used ({why.strip().rstrip(':')})")
        else:
            if entry["serverless"] or entry["nodes"]:
                price_cache.write(region, engine, {"fetched": now.isoformat(), "entry": entry})
                book = book_from_entry(entry, region, engine, "price-list-api", label, fetched)
                return _fill_serverless(book)
            notes.append(f"AWS Price List API has no {engine} products for {region}")
    book = from_table(
        load_table(TABLE, "shipped table"), region, engine, "shipped-table", "shipped table"
    )
    book.notes[:0] = notes
    return book


def _fill_serverless(book: PriceBook) -> PriceBook:
    """A Price List answer without a serverless price takes the shipped table's, which
    carries its own source and date."""
    if book.gb_hour is not None and book.ecpu_million is not None:
        return book
    table = from_table(
        load_table(TABLE, "shipped table"),
        book.region,
        book.engine,
        "shipped-table",
        "shipped table",
    )
    for name in ("gb_hour", "ecpu_million"):
        if getattr(book, name) is None and getattr(table, name) is not None:
            setattr(book, name, getattr(table, name))
            book.notes.append(
                f"the Price List API had no serverless {name} price for {book.engine}: "
                f"{table.label}"
            )
    return book
