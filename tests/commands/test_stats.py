"""`stats` against a server of our own with known hits, misses and evictions (a small
maxmemory with allkeys-lru forces evictions), the shared cluster and replicated pair, and
CloudWatch data put into moto."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import redis
from helpers import aws as aws_helpers
from helpers.aws import REGION
from helpers.common import server_env
from helpers.engines import expected_engine

from closeup_ops.local.servers import start_redis

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world

HITS, MISSES = 50, 150


@pytest.fixture(scope="module")
def evicting(tmp_path_factory):
    """Our own server: 2 MB maxmemory, allkeys-lru, filled past the limit (evictions), then
    64 MB and exactly HITS hits and MISSES misses."""
    server = start_redis(
        tmp_path_factory.mktemp("stats"), "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"
    )
    client = redis.Redis(host=server.host, port=server.port)
    pipe = client.pipeline(transaction=False)
    for i in range(4000):
        pipe.set(f"fill:{i}", b"x" * 1000)
    pipe.execute()
    # evictions happened; now make room so the approximate LRU cannot evict the hit keys
    client.config_set("maxmemory", "64mb")
    for i in range(HITS):
        client.set(f"hit:{i}", "v")
    for i in range(HITS):
        assert client.get(f"hit:{i}") == b"v"
    for i in range(MISSES):
        assert client.get(f"missing:{i}") is None
    client.close()
    yield server
    server.stop()


def test_known_hits_misses_and_evictions_breach(cli, evicting):
    r = cli("stats", "--json", env=server_env(evicting))
    assert r.code == 6, r.err
    doc = r.json()
    info = doc["info"]
    assert info["keyspace_hits"] == HITS and info["keyspace_misses"] == MISSES
    assert info["hit_rate"] == 25.0
    assert info["evicted_keys"] > 0
    assert info["maxmemory"] == 64 * 1024 * 1024
    assert info["role"] == "master" and info["keys"] > 0
    judged = {j["name"]: j for j in doc["judgements"]}
    assert judged["evictions"]["breached"] and judged["evictions"]["source"] == "info"
    assert judged["hit-rate"]["breached"] and judged["hit-rate"]["value"] == 25.0
    assert doc["breached"] is True
    assert doc["cloudwatch"] is None and "no cache" in doc["cloudwatch_note"]
    assert r.err_lines == [
        "closeup-ops: error: stats: threshold breached (evictions, hit-rate): see the "
        "evidence above; thresholds are set with --max-cpu, --max-evictions, --min-hit-rate, "
        "--max-throttled"
    ]


def test_thresholds_are_flags(cli, evicting):
    r = cli(
        "stats",
        "--json",
        "--max-evictions",
        "1000000",
        "--min-hit-rate",
        "20",
        env=server_env(evicting),
    )
    assert r.code == 0, r.err
    assert not any(j["breached"] for j in r.json()["judgements"])


def test_human_output(cli, evicting):
    r = cli("stats", env=server_env(evicting))
    assert r.code == 6
    assert "hit rate     25.0% (50 hits, 150 misses since start)" in r.out
    assert "BREACH  evictions" in r.out
    assert "of 64.0 MiB" in r.out
    assert f"engine       {expected_engine(evicting)}" in r.out


def test_few_lookups_are_not_judged(cli, tmp_path):
    # our own server, so the lookups are known: 99 misses (the minimum is 100 lookups)
    server = start_redis(tmp_path / "few")
    try:
        client = redis.Redis(host=server.host, port=server.port)
        for i in range(99):
            assert client.get(f"missing:{i}") is None
        client.close()
        r = cli("stats", "--json", env=server_env(server))
        assert r.code == 0, r.err  # 0% hit rate, but not judged
        hit = {j["name"]: j for j in r.json()["judgements"]}["hit-rate"]
        assert hit["value"] is None and not hit["breached"]
        assert "not judged" in hit["evidence"] and "99 lookups" in hit["evidence"]
    finally:
        server.stop()


def test_cluster_sums_every_primary(cli, redis_cluster):
    r = cli(
        "stats",
        "--json",
        "--max-evictions",
        "1000000",
        "--min-hit-rate",
        "0",
        env=server_env(redis_cluster.entry),
    )
    assert r.code == 0, r.err
    info = r.json()["info"]
    assert info["role"] == "cluster (3 primaries)"
    assert len(info["nodes"]) == 3
    assert {n["address"] for n in info["nodes"]} == {p.address for p in redis_cluster.primaries()}
    assert info["used_memory"] == sum(n["used_memory"] for n in info["nodes"])
    assert info["connected_clients"] == sum(n["connected_clients"] for n in info["nodes"])
    assert all(n["replicas"] == 1 for n in info["nodes"])
    # each primary's engine from its own binary's --version ("valkey 9.1.2")
    want = {n.address: expected_engine(n) for n in redis_cluster.nodes}
    assert all(n["engine"] == want[n["address"]] for n in info["nodes"])
    assert info["engine"] == ", ".join(sorted({want[n["address"]] for n in info["nodes"]}))


def test_replication_lag_from_the_primary(cli, redis_replicated):
    r = cli(
        "stats",
        "--json",
        "--min-hit-rate",
        "0",
        "--max-evictions",
        "1000000",
        env=server_env(redis_replicated.primary),
    )
    assert r.code == 0
    info = r.json()["info"]
    assert info["nodes"][0]["replicas"] == 1
    assert info["repl_lag_s"] is not None and info["repl_lag_bytes"] is not None
    r = cli(
        "stats",
        "--json",
        "--min-hit-rate",
        "0",
        "--max-evictions",
        "1000000",
        env=server_env(redis_replicated.replica),
    )
    node = r.json()["info"]["nodes"][0]
    assert node["role"] == "slave" and node["master_link_status"] == "up"


def test_watch_ndjson_with_count(cli, evicting):
    r = cli(
        "stats", "--watch", "--json", "--count", "2", "--interval", "0.1", env=server_env(evicting)
    )
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert len(rows) == 2
    assert {"keys", "ops_per_sec", "hit_rate", "evicted", "used_memory"} <= set(rows[0])
    assert rows[0]["evicted"] == 0 and rows[0]["breached"] == []


def test_watch_lines_like_redis_cli_stat(cli, evicting):
    r = cli("stats", "--watch", "--count", "3", "--interval", "0.1", env=server_env(evicting))
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["time", "keys", "mem"]
    assert len(lines) == 4


def test_watch_ends_with_ctrl_c_exit_0(cli, evicting, monkeypatch):
    import closeup_ops.commands.stats as command

    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(command, "_sleep", sleep)
    r = cli("stats", "--watch", "--json", env=server_env(evicting))
    assert r.code == 0, r.err
    assert len(r.out.splitlines()) == 2


def test_watch_reports_evictions_seen_while_watching(cli, tmp_path, monkeypatch):
    import closeup_ops.commands.stats as command

    server = start_redis(tmp_path / "w", "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")
    client = redis.Redis(host=server.host, port=server.port)
    real_sleep = command._sleep

    def sleep(seconds):  # between two INFOs, push the server past maxmemory
        pipe = client.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"w:{i}", b"x" * 1000)
        pipe.execute()
        real_sleep(0.01)

    monkeypatch.setattr(command, "_sleep", sleep)
    try:
        r = cli("stats", "--watch", "--json", "--count", "1", env=server_env(server))
    finally:
        client.close()
        server.stop()
    assert r.code == 6
    row = json.loads(r.out.splitlines()[0])
    assert row["evicted"] > 0 and row["breached"] == ["evictions"]


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "1x"],
        ["--since", "10s"],
        ["--interval", "0"],
        ["--count", "-1"],
        ["--max-cpu", "101"],
        ["--min-hit-rate", "-1"],
        ["--max-evictions", "-3"],
        ["--no-aws", "--no-info"],
        ["--watch", "--no-info"],
    ],
)
def test_bad_flags_exit_2(cli, args):
    r = cli("stats", *args)
    assert r.code == 2
    assert len(r.err_lines) == 1


def put_metrics(cluster_id: str, values: dict[str, list[float]]) -> None:
    import boto3

    cw = boto3.client("cloudwatch", region_name=REGION)
    now = dt.datetime.now(dt.timezone.utc)
    for name, series in values.items():
        cw.put_metric_data(
            Namespace="AWS/ElastiCache",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [
                        {"Name": "CacheClusterId", "Value": cluster_id},
                        {"Name": "CacheNodeId", "Value": "0001"},
                    ],
                    "Timestamp": now - dt.timedelta(minutes=5 * (i + 1)),
                    "Value": v,
                }
                for i, v in enumerate(series)
            ],
        )


def test_cloudwatch_from_moto_breaches(cli, moto_world):
    put_metrics(
        "demo-001",
        {
            "EngineCPUUtilization": [40.0, 85.0, 30.0],
            "CPUUtilization": [10.0, 12.0, 11.0],
            "CurrConnections": [12.0, 14.0, 13.0],
            "Evictions": [0.0, 7.0, 0.0],
            "CacheHits": [300.0, 300.0, 300.0],
            "CacheMisses": [100.0, 100.0, 100.0],
        },
    )
    env = {"AWS_REGION": REGION}
    r = cli("stats", "--json", "--no-info", "--cache", "demo", "--since", "1h", env=env)
    assert r.code == 6, r.err
    doc = r.json()
    assert doc["info"] is None
    metrics = doc["cloudwatch"]["metrics"]
    assert metrics["EngineCPUUtilization"]["peak"] == 85.0
    assert metrics["Evictions"]["total"] == 7.0
    assert metrics["CacheHits"]["total"] == 900.0
    judged = {j["name"]: j for j in doc["judgements"]}
    assert judged["cpu"]["breached"] and "EngineCPUUtilization" in judged["cpu"]["evidence"]
    assert judged["evictions"]["breached"] and judged["evictions"]["source"] == "cloudwatch"
    assert judged["hit-rate"]["value"] == 75.0 and judged["hit-rate"]["breached"]
    r = cli(
        "stats",
        "--json",
        "--no-info",
        "--cache",
        "demo",
        "--max-cpu",
        "90",
        "--max-evictions",
        "10",
        "--min-hit-rate",
        "70",
        env=env,
    )
    assert r.code == 0, r.err


def test_cloudwatch_judges_the_window_and_info_is_shown(cli, moto_world, evicting):
    """With CloudWatch, evictions and hit rate are judged over --since, not since start."""
    put_metrics(
        "demo-001",
        {
            "EngineCPUUtilization": [20.0],
            "Evictions": [0.0],
            "CacheHits": [990.0],
            "CacheMisses": [10.0],
        },
    )
    env = server_env(evicting, AWS_REGION=REGION)
    r = cli("stats", "--json", "--cache", "demo", env=env)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["info"]["hit_rate"] == 25.0  # shown
    assert {j["source"] for j in doc["judgements"]} == {"cloudwatch"}


def test_cloudwatch_unknown_cache_exit_5(cli, moto_world):
    r = cli("stats", "--no-info", "--cache", "nope", env={"AWS_REGION": REGION})
    assert r.code == 5
    assert "nope" in r.err


def test_watch_on_a_terminal_rewrites_one_line(cli, evicting, monkeypatch):
    from closeup_ops import output

    monkeypatch.setattr(output, "fancy", lambda: True)
    r = cli("stats", "--watch", "--count", "3", "--interval", "0.05", env=server_env(evicting))
    assert r.code == 0
    header, rest = r.out.split("\n", 1)
    assert header.split()[:2] == ["time", "keys"]
    assert rest.count("\r\x1b[2K") == 3 and rest.endswith("\n") and rest.count("\n") == 1


def test_cloudwatch_human_output(cli, moto_world):
    put_metrics("demo-001", {"EngineCPUUtilization": [75.0], "Evictions": [0.0]})
    r = cli("stats", "--no-info", "--cache", "demo", env={"AWS_REGION": REGION})
    assert r.code == 6, r.err
    assert "CloudWatch demo (replication-group), last 1 h, 1 min periods" in r.out
    row = next(line for line in r.out.splitlines() if line.startswith("EngineCPUUtilization"))
    assert row.split()[1:] == ["Average", "75", "75", "75"]
    assert "no data" in next(line for line in r.out.splitlines() if line.startswith("CacheHits"))
    assert "BREACH  cpu" in r.out and "ok      evictions" in r.out


def test_help_shows_the_threshold_flags(cli):
    r = cli("stats", "--help")
    assert r.code == 0
    for flag in ("--max-cpu", "--max-evictions", "--min-hit-rate", "--max-throttled"):
        assert flag in r.out
    assert "[default: 70.0]" in r.out and "--no-no-aws" not in r.out


def test_cloudwatch_for_an_unknown_cache_still_shows_info(cli, moto_world, evicting):
    """AWS's half failing (here: no such cache) costs only that half when INFO was read:
    a warning line says why, INFO is shown and judged, the report says CloudWatch was
    skipped and why."""
    env = server_env(evicting, AWS_REGION=REGION)
    r = cli("stats", "--json", "--cache", "nope", env=env)
    assert r.code == 6, r.err  # INFO's evictions (since start) are judged: a breach
    doc = r.json()
    assert doc["info"]["hit_rate"] == 25.0 and doc["cloudwatch"] is None
    assert doc["cloudwatch_note"].startswith("skipped: ") and "nope" in doc["cloudwatch_note"]
    warning = r.err_lines[0]
    assert warning.startswith("closeup-ops: warning: CloudWatch skipped: ") and "nope" in warning
    assert "evictions" in r.err_lines[-1] and len(r.err_lines) == 2
    assert {j["source"] for j in doc["judgements"]} == {"info"}


def _denied_elasticache(monkeypatch):
    from helpers.aws import stubbed

    from closeup_ops.connect import aws

    ec, stub = stubbed("elasticache")
    stub.add_client_error(
        "describe_serverless_caches",
        service_error_code="AccessDenied",
        service_message="User: arn:aws:iam::1:user/oncall is not authorized",
        http_status_code=403,
    )
    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: ec)
    return stub


def test_cloudwatch_access_denied_still_shows_info(cli, aws_env, evicting, monkeypatch):
    stub = _denied_elasticache(monkeypatch)
    with stub:
        r = cli("stats", "--json", "--cache", "demo", env=server_env(evicting, AWS_REGION=REGION))
    assert r.code == 6, r.err  # judged on INFO alone
    doc = r.json()
    assert doc["info"]["hit_rate"] == 25.0 and doc["cloudwatch"] is None
    assert "AccessDenied" in doc["cloudwatch_note"] and "AccessDenied" in r.err


def test_cloudwatch_access_denied_without_info_is_exit_4(cli, aws_env, monkeypatch):
    stub = _denied_elasticache(monkeypatch)
    with stub:
        r = cli("stats", "--no-info", "--cache", "demo", env={"AWS_REGION": REGION})
    assert r.code == 4
    assert len(r.err_lines) == 1 and "AccessDenied" in r.err
