"""`closeup-ops cost`: usage put into moto's CloudWatch hour by hour, prices from the Price
List API through botocore's Stubber (moto has no `pricing` model), the cache's description
through Stubber where moto lacks it (serverless caches; a replication group's replica).
Every expected figure is worked out here from the data the test put in."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import redis
from helpers import aws as aws_helpers
from helpers import pricing
from helpers.aws import REGION, not_found, serverless_desc, stubbed

from closeup_ops.local.servers import start_redis

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world

GIB = 1024**3
MIB = 1024**2
# the window ends at a fixed whole hour; the test's data sits inside it
END = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def fixed_clock(monkeypatch, tmp_path):
    from closeup_ops.ops.aws import cost, cost_report

    monkeypatch.setattr(
        cost_report, "window_for", lambda since_s, now=None: cost.window_for(since_s, END)
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def cw_moto(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield


def put_hourly(dims: list[dict[str, str]], metric: str, per_hour: dict[int, list[float]]):
    """Data points `hours_ago` hours before END (+10 and +40 minutes into that hour)."""
    import boto3

    cw = boto3.client("cloudwatch", region_name=REGION)
    data = []
    for hours_ago, values in per_hour.items():
        hour = END - dt.timedelta(hours=hours_ago)
        for j, value in enumerate(values):
            when = hour + dt.timedelta(minutes=10 + 30 * j % 50)
            data.append(
                {"MetricName": metric, "Dimensions": dims, "Timestamp": when, "Value": value}
            )
    cw.put_metric_data(Namespace="AWS/ElastiCache", MetricData=data)


def clients(monkeypatch, ec, pricing_client=None):
    import boto3

    from closeup_ops.connect import aws
    from closeup_ops.ops.aws import prices

    cw = boto3.client("cloudwatch", region_name=REGION)
    by_service = {"elasticache": ec, "cloudwatch": cw}
    monkeypatch.setattr(
        aws, "aws_client", lambda settings, service, session=None: by_service[service]
    )
    if pricing_client is not None:
        monkeypatch.setattr(prices, "pricing_client", lambda settings, region: pricing_client)


def serverless_cache(ec_stub, name: str, engine: str, snapshots: list | None = None) -> None:
    desc = {**serverless_desc(name), "Engine": engine}
    ec_stub.add_response(
        "describe_serverless_caches", {"ServerlessCaches": [desc]}, {"ServerlessCacheName": name}
    )
    ec_stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": snapshots or []},
        {"ServerlessCacheName": name},
    )


def lines(scenario: dict) -> dict[str, dict]:
    return {ln["item"]: ln for ln in scenario["lines"]}


# Redis OSS serverless, 6-hour window, 5 hours with data (two points an hour)
BYTES = {
    5: [0.5 * GIB, 0.3 * GIB],  # avg 0.4 GB: billed 1 GB on Redis OSS
    4: [2 * GIB, 3 * GIB],  # 2.5
    3: [1.5 * GIB, 1.5 * GIB],  # 1.5
    2: [0.2 * GIB, 0.2 * GIB],  # 0.2: billed 1 GB
    1: [4 * GIB, 2 * GIB],  # 3.0 (the peak)
}
ECPUS = {5: [4e6, 6e6], 4: [10e6, 10e6], 3: [5e6], 2: [1e6, 4e6], 1: [10e6]}  # 50 million


def redis_prices(stub) -> None:
    # Redis OSS: USD 0.125 per GB-hour, USD 0.0034 per million ECPUs stated per ECPU
    pricing.add_answers(
        stub,
        REGION,
        "Redis",
        pricing.serverless_products(REGION, "Redis", "0.1250000000", "0.0000000034"),
        pricing.node_products(
            REGION,
            "Redis",
            {
                "cache.t4g.medium": ("0.0650000000", "3.09 GiB"),
                "cache.r7g.large": ("0.2190000000", "13.07 GiB"),
            },
        ),
    )
    pricing.add_answers(
        stub,
        REGION,
        "Valkey",
        pricing.serverless_products(REGION, "Valkey", "0.0840000000", "0.0023", "Million ECPUs"),
        pricing.node_products(REGION, "Valkey", {"cache.t4g.medium": ("0.0520000000", "3.09 GiB")}),
    )


def test_serverless_redis_by_hand(cli, cw_moto, fixed_clock, monkeypatch):
    dims = [{"Name": "clusterId", "Value": "demo"}]
    put_hourly(dims, "BytesUsedForCache", BYTES)
    put_hourly(dims, "ElastiCacheProcessingUnits", ECPUS)
    ec, ec_stub = stubbed("elasticache")
    snap = {
        "ServerlessCacheSnapshotName": "s1",
        "BytesUsedForCache": str(2 * GIB),
        "ServerlessCacheConfiguration": {"ServerlessCacheName": "demo", "Engine": "redis"},
    }
    serverless_cache(ec_stub, "demo", "redis", [snap])
    pc, price_stub = stubbed("pricing")
    redis_prices(price_stub)
    clients(monkeypatch, ec, pc)
    with ec_stub, price_stub:
        r = cli("cost", "--cache", "demo", "--since", "6h", "--json", "--no-keys")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["window"]["hours"] == 6 and doc["window"]["hours_with_data"] == 5
    assert doc["prices"].startswith("AWS Price List API, fetched ")
    now = lines(doc["current"])
    # data stored: hourly averages 0.4, 2.5, 1.5, 0.2, 3.0 GB; below 1 GB billed as 1 GB
    gb_hours = 1 + 2.5 + 1.5 + 1 + 3.0  # 9.0
    stored = now["data stored"]
    assert stored["unit"] == "GB-hours" and stored["quantity"] == pytest.approx(gb_hours)
    assert stored["price_usd"] == 0.125 and stored["price_unit"] == "USD per GB-hour"
    assert stored["source_metric"].startswith("BytesUsedForCache (Average, 1-hour periods")
    assert "at least 1 GB" in stored["source_metric"]
    assert stored["window_usd"] == pytest.approx(9.0 * 0.125)
    assert stored["month_usd"] == pytest.approx(9.0 / 5 * 720 * 0.125)  # 162.0
    ecpu = now["ECPUs"]
    assert ecpu["unit"] == "million ECPUs" and ecpu["quantity"] == pytest.approx(50.0)
    assert ecpu["price_usd"] == pytest.approx(0.0034)  # 0.0000000034 per ECPU
    assert ecpu["price_unit"] == "USD per million ECPUs"
    assert ecpu["source_metric"] == "ElastiCacheProcessingUnits (Sum)"
    assert ecpu["window_usd"] == pytest.approx(50 * 0.0034)
    assert ecpu["month_usd"] == pytest.approx(50 / 5 * 720 * 0.0034)  # 24.48
    assert doc["current"]["window_usd"] == pytest.approx(1.125 + 0.17)
    assert doc["current"]["month_usd"] == pytest.approx(162.0 + 24.48)
    assert doc["usage"]["data_stored_peak_gb"] == pytest.approx(3.0)

    whatifs = {s["name"]: s for s in doc["what_ifs"]}
    valkey = lines(whatifs["on Valkey (serverless)"])
    # Valkey meters at least 100 MB: 0.4 and 0.2 are above it, so nothing is rounded up
    assert valkey["data stored"]["quantity"] == pytest.approx(0.4 + 2.5 + 1.5 + 0.2 + 3.0)
    assert valkey["data stored"]["month_usd"] == pytest.approx(7.6 / 5 * 720 * 0.084, abs=1e-4)
    assert valkey["ECPUs"]["month_usd"] == pytest.approx(50 / 5 * 720 * 0.0023)
    # peak 3.0 GB: t4g.medium holds 3.09 x 0.75 = 2.3175 GB -> 2 shards x 2 = 4 nodes,
    # 4 x 720 x 0.065 = 187.2; r7g.large: 1 shard x 2 x 720 x 0.219 = 315.36
    layout = whatifs["smallest node-based layout with one replica"]
    assert layout["month_usd"] == pytest.approx(4 * 720 * 0.065)
    assert layout["lines"][0]["item"].startswith("cache.t4g.medium x 4 nodes (2 shards")
    vlayout = whatifs["smallest Valkey node-based layout with one replica"]
    assert vlayout["month_usd"] == pytest.approx(4 * 720 * 0.052)
    points = {p["nodes"]: p for p in doc["break_even"]}
    p = points["smallest node-based layout with one replica"]
    # serverless = 162.0 storage + 0.0034 per million ECPUs; nodes = 187.2
    assert p["break_even_million_ecpus_per_month"] == pytest.approx(
        (187.2 - 162.0) / 0.0034, abs=0.1
    )
    assert p["current_million_ecpus_per_month"] == pytest.approx(50 / 5 * 720)  # 7200 < 7411.8
    assert p["cheaper_now"] == "serverless"
    vp = points["smallest Valkey node-based layout with one replica"]
    assert vp["break_even_million_ecpus_per_month"] == pytest.approx(
        (4 * 720 * 0.052 - 7.6 / 5 * 720 * 0.084) / 0.0023, abs=0.1
    )
    assert "data transfer: left out" in doc["left_out"][0]
    assert doc["left_out"][1].startswith("backup storage: 1 snapshot, 2.000 GB known")
    assert doc["no_ttl"] is None and doc["no_ttl_note"] == "skipped: --no-keys"

    # the answer was kept on disk with its date: a second run does not ask the API
    ec2, ec2_stub = stubbed("elasticache")
    serverless_cache(ec2_stub, "demo", "redis")
    idle, idle_stub = stubbed("pricing")
    clients(monkeypatch, ec2, idle)
    with ec2_stub, idle_stub:
        again = cli("cost", "--cache", "demo", "--since", "6h", "--no-keys")
    assert again.code == 0, again.err
    assert "(cached)" in again.out and "AWS Price List API, fetched" in again.out
    assert "What if: on Valkey (serverless)" in again.out and "Break-even" in again.out


def test_valkey_minimum_metered_storage_shipped_table(cli, cw_moto, fixed_clock, monkeypatch):
    dims = [{"Name": "clusterId", "Value": "vk"}]
    # hourly averages 50 MB, 10 MB, 300 MB: Valkey bills 100 MB for the first two
    put_hourly(dims, "BytesUsedForCache", {3: [50 * MIB], 2: [5 * MIB, 15 * MIB], 1: [300 * MIB]})
    put_hourly(dims, "ElastiCacheProcessingUnits", {3: [1e6], 1: [2e6]})
    ec, ec_stub = stubbed("elasticache")
    serverless_cache(ec_stub, "vk", "valkey")
    pc, price_stub = stubbed("pricing")
    price_stub.add_client_error(
        "get_products",
        service_error_code="AccessDeniedException",
        service_message="not authorized",
        http_status_code=400,
    )
    clients(monkeypatch, ec, pc)
    with ec_stub, price_stub:
        r = cli("cost", "--cache", "vk", "--since", "4h", "--json", "--no-keys")
    assert r.code == 0, r.err
    doc = r.json()
    table = json.loads((Path(__file__).parents[2] / "closeup_ops/data/prices.json").read_text())
    valkey = table["regions"][REGION]["valkey"]["serverless"]
    assert doc["prices"].startswith(f"list prices as of {table['as_of']} (shipped table")
    assert any("AccessDeniedException" in n for n in doc["notes"])
    stored = lines(doc["current"])["data stored"]
    gb_hours = (100 + 100 + 300) / 1024
    assert stored["quantity"] == pytest.approx(gb_hours)
    assert "at least 100 MB (minimum metered storage, valkey)" in stored["source_metric"]
    assert stored["window_usd"] == pytest.approx(gb_hours * valkey["gb_hour"], abs=1e-6)
    assert stored["month_usd"] == pytest.approx(gb_hours / 3 * 720 * valkey["gb_hour"], abs=1e-4)
    ecpu = lines(doc["current"])["ECPUs"]
    assert ecpu["window_usd"] == pytest.approx(3 * valkey["ecpu_million"])
    # already Valkey: no "on Valkey" what-if
    assert not any(s["name"].startswith("on Valkey") for s in doc["what_ifs"])
    # the same hours on Redis OSS would be 3 GB-hours (each hour rounded up to 1 GB)
    assert gb_hours < 3


def test_missing_region_price_is_named_and_left_out(cli, cw_moto, fixed_clock, monkeypatch):
    dims = [{"Name": "clusterId", "Value": "demo"}]
    put_hourly(dims, "BytesUsedForCache", {2: [2 * GIB], 1: [2 * GIB]})
    ec, ec_stub = stubbed("elasticache", "ap-south-1")
    serverless_cache(ec_stub, "demo", "redis")
    pc, price_stub = stubbed("pricing")
    for _ in range(2):  # Redis OSS, then Valkey
        price_stub.add_client_error(
            "get_products", service_error_code="AccessDeniedException", http_status_code=400
        )
    clients(monkeypatch, ec, pc)
    with ec_stub, price_stub:
        r = cli("cost", "--cache", "demo", "--region", "ap-south-1", "--since", "3h", "--no-keys")
    assert r.code == 0, r.err
    assert "left out: no serverless GB-hour price for redis in ap-south-1" in r.out
    assert "left out: no serverless ECPU price for redis in ap-south-1" in r.out
    assert "total: - USD in the window, - USD a month" in r.out
    assert "shipped table has no redis prices for ap-south-1" in r.out


def test_node_based_every_node_and_a_missing_node_price(
    cli, cw_moto, fixed_clock, monkeypatch, tmp_path
):
    # a primary older than the window and a replica created 2.5 h before its end
    old = END - dt.timedelta(days=40)
    young = END - dt.timedelta(hours=2, minutes=30)
    group = {
        "ReplicationGroupId": "pair",
        "MemberClusters": ["pair-001", "pair-002"],
        "CacheNodeType": "cache.r7g.large",
        "Engine": "redis",
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "NodeGroupMembers": [
                    {"CacheClusterId": "pair-001", "CacheNodeId": "0001", "CurrentRole": "primary"},
                    {"CacheClusterId": "pair-002", "CacheNodeId": "0001", "CurrentRole": "replica"},
                ],
            }
        ],
    }

    def member(cid, created):
        return {
            "CacheClusterId": cid,
            "CacheNodeType": "cache.r7g.large",
            "Engine": "redis",
            "CacheClusterCreateTime": created,
            "CacheNodes": [{"CacheNodeId": "0001", "CacheNodeCreateTime": created}],
        }

    ec, stub = stubbed("elasticache")
    not_found(stub, "describe_serverless_caches", "ServerlessCacheNotFoundFault")
    stub.add_response(
        "describe_replication_groups",
        {"ReplicationGroups": [group]},
        {"ReplicationGroupId": "pair"},
    )
    # the members come from one DescribeCacheClusters call (connect.aws.describe_by_name)
    stub.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [member("pair-001", old), member("pair-002", young)]},
        {"ShowCacheNodeInfo": True},
    )
    stub.add_response("describe_snapshots", {"Snapshots": []}, {"ReplicationGroupId": "pair"})
    put_hourly(
        [{"Name": "CacheClusterId", "Value": "pair-001"}, {"Name": "CacheNodeId", "Value": "0001"}],
        "BytesUsedForCache",
        {h: [1.5 * GIB] for h in range(1, 11)},
    )
    # the replica holds the same data: it must not be counted twice
    put_hourly(
        [{"Name": "CacheClusterId", "Value": "pair-002"}, {"Name": "CacheNodeId", "Value": "0001"}],
        "BytesUsedForCache",
        {h: [1.5 * GIB] for h in range(1, 3)},
    )
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "as_of": "2026-11-30",
                "regions": {
                    REGION: {
                        "redis": {
                            "serverless": {"gb_hour": 0.125, "ecpu_million": 0.0034},
                            "nodes": {"cache.r7g.large": {"hourly": 0.219, "memory_gib": 13.07}},
                        },
                        "valkey": {
                            "serverless": {"gb_hour": 0.084, "ecpu_million": 0.0023},
                            "nodes": {},
                        },
                    }
                },
            }
        )
    )
    clients(monkeypatch, ec)
    with stub:
        r = cli(
            "cost",
            "--cache",
            "pair",
            "--since",
            "10h",
            "--json",
            "--no-keys",
            "--price-file",
            str(prices),
        )
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["prices"].startswith("list prices as of 2026-11-30 (price file ")
    (line,) = doc["current"]["lines"]
    # primary: all 10 hours; replica: created 2.5 h before the end -> 3 (partial hours count)
    assert line["item"] == "cache.r7g.large x 2 nodes" and line["unit"] == "node-hours"
    assert line["quantity"] == 10 + 3
    assert line["window_usd"] == pytest.approx(13 * 0.219)
    assert line["month_usd"] == pytest.approx(2 * 720 * 0.219)
    whatifs = {s["name"]: s for s in doc["what_ifs"]}
    same = whatifs["on Valkey (same nodes)"]
    assert same["month_usd"] is None
    assert same["left_out"] == [
        "no on-demand cache.r7g.large price for valkey in us-east-1 (list prices as of "
        f"2026-11-30 (price file {prices}; regions: us-east-1))"
    ]
    on_serverless = whatifs["serverless (redis)"]
    stored = lines(on_serverless)["data stored"]
    assert stored["quantity"] == pytest.approx(10 * 1.5)  # the primary's 1.5 GB, 10 hours
    assert "ECPUs: not known" in on_serverless["left_out"][0]
    points = {p["serverless"]: p for p in doc["break_even"]}
    p = points["serverless (redis)"]
    assert p["break_even_million_ecpus_per_month"] == pytest.approx(
        (2 * 720 * 0.219 - 720 * 1.5 * 0.125) / 0.0034, abs=0.1
    )
    assert p["cheaper_now"] == "unknown"
    assert doc["left_out"][1] == "backup storage: no snapshots of this cache"


@pytest.fixture
def keyed(tmp_path):
    server = start_redis(tmp_path / "cost-keys")
    client = redis.Redis(host=server.host, port=server.port)
    for i in range(30):
        client.set(f"sess:{i}", "s" * 1000)  # no TTL
        client.set(f"otp:{i}", "1" * 100, ex=300)
    mem = {k: client.memory_usage(k) for k in client.scan_iter(count=1000)}
    client.close()
    yield server, mem
    server.stop()


def test_no_ttl_storage_from_a_sample(cli, cw_moto, fixed_clock, monkeypatch, keyed, tmp_path):
    server, mem = keyed
    dims = [{"Name": "clusterId", "Value": "demo"}]
    put_hourly(dims, "BytesUsedForCache", {2: [2 * GIB], 1: [2 * GIB]})
    ec, ec_stub = stubbed("elasticache")
    serverless_cache(ec_stub, "demo", "valkey")
    clients(monkeypatch, ec)
    price_file = str(tmp_path / "p.json")
    with open(price_file, "w") as fh:
        fh.write(
            json.dumps(
                {
                    "as_of": "x",
                    "regions": {
                        REGION: {"valkey": {"serverless": {"gb_hour": 0.1, "ecpu_million": 0.002}}}
                    },
                }
            )
        )
    env = {"REDIS_HOST": server.host, "REDIS_PORT": str(server.port)}
    with ec_stub:
        r = cli(
            "cost",
            "--cache",
            "demo",
            "--since",
            "3h",
            "--json",
            "--keys",
            "--price-file",
            price_file,
            env=env,
        )
    assert r.code == 0, r.err
    doc = r.json()
    n = doc["no_ttl"]
    sess = sum(v for k, v in mem.items() if k.startswith(b"sess:"))
    share = sess / sum(mem.values())
    assert n["sampled_keys"] == 60 and n["weighted_by"] == "memory"
    assert n["share"] == pytest.approx(share, abs=1e-4)
    stored_month = 2.0 * 720 * 0.1  # 2 GB an hour over 2 hours, 720 hours
    assert n["month_usd"] == pytest.approx(share * stored_month, abs=0.01)
    assert [ns["namespace"] for ns in n["namespaces"]] == ["sess"]
    # a sample, never a full scan
    with_limit = stubbed("elasticache")
    serverless_cache(with_limit[1], "demo", "valkey")
    clients(monkeypatch, with_limit[0])
    with with_limit[1]:
        r = cli(
            "cost",
            "--cache",
            "demo",
            "--since",
            "3h",
            "--json",
            "--keys",
            "--sample",
            "20",
            "--price-file",
            price_file,
            env=env,
        )
    assert r.code == 0, r.err
    assert r.json()["no_ttl"]["sampled_keys"] <= 20


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--since", "soon"], "--since soon is not valid"),
        (["--since", "30m"], "--since 30m is shorter than an hour"),
        (["--sample", "-1"], "--sample -1 is not valid"),
        (["--price-file", "/nonexistent/prices.json"], "no such file"),
    ],
)
def test_bad_inputs_exit_2_in_one_line(cli, aws_env, args, expect):
    r = cli("cost", "--cache", "demo", *args)
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and expect in r.err, r.err


def test_bad_price_file_exit_2(cli, moto_world, fixed_clock, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("cost", "--cache", "demo", "--price-file", str(bad), "--no-keys")
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and "is not a price file" in r.err


def test_unknown_cache_exit_5_in_one_line(cli, moto_world):
    r = cli("cost", "--cache", "nope", "--no-keys")
    assert r.code == 5, r.err
    # (moto in-process has no serverless APIs: the tool warns about that once)
    errors = [line for line in r.err_lines if "error:" in line]
    assert len(errors) == 1 and "cache 'nope' not found" in errors[0]


def test_unreachable_cache_skips_the_sample_not_the_report(
    cli, cw_moto, fixed_clock, monkeypatch, tmp_path
):
    from closeup_ops.local.servers import free_port

    put_hourly([{"Name": "clusterId", "Value": "demo"}], "BytesUsedForCache", {1: [GIB]})
    ec, ec_stub = stubbed("elasticache")
    serverless_cache(ec_stub, "demo", "valkey")
    clients(monkeypatch, ec)
    price_file = tmp_path / "p.json"
    price_file.write_text(json.dumps({"as_of": "x", "regions": {}}))
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port()), "REDIS_TIMEOUT": "2"}
    with ec_stub:
        r = cli(
            "cost",
            "--cache",
            "demo",
            "--since",
            "2h",
            "--keys",
            "--price-file",
            str(price_file),
            env=env,
        )
    assert r.code == 0, r.err
    assert (
        f"Keys without TTL: skipped: connection to 127.0.0.1:{env['REDIS_PORT']} refused" in r.out
    )
    # no price at all for the region: both lines named, nothing totalled
    assert "left out: no serverless GB-hour price for valkey in us-east-1" in r.out
