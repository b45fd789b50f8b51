"""stats ops: --since parsing, combining CloudWatch series across nodes (moto), serverless
metrics, the thresholds, and --watch deltas."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import REGION

from closeup_ops.errors import UsageError
from closeup_ops.ops.aws.cloudwatch import fetch, judge, period_for
from closeup_ops.ops.aws.lookup import REPLICATION_GROUP, SERVERLESS, CacheFacts
from closeup_ops.ops.stats import (
    InfoSummary,
    NodeStats,
    Thresholds,
    build_report,
    delta,
    judge_delta,
    parse_since,
    summarize,
)

aws_env = aws_helpers.aws_env


@pytest.fixture
def cw(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


NOW = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)


def put(cw, name: str, dims: dict[str, str], values: list[float]) -> None:
    cw.put_metric_data(
        Namespace="AWS/ElastiCache",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Timestamp": NOW - dt.timedelta(minutes=2 * (i + 1)),
                "Value": v,
            }
            for i, v in enumerate(values)
        ],
    )


def node(cluster: str) -> dict[str, str]:
    return {"CacheClusterId": cluster, "CacheNodeId": "0001"}


@pytest.mark.parametrize(
    "text,seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1.5h", 5400)]
)
def test_parse_since(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "-1h", "5s", "64d", "1w"])
def test_parse_since_rejects(text):
    with pytest.raises(UsageError):
        parse_since(text)


def test_period_keeps_points_under_1440():
    assert period_for(3600) == 60
    assert period_for(86400) == 60
    assert period_for(7 * 86400) == 420
    assert 30 * 86400 / period_for(30 * 86400) <= 1440


def test_two_nodes_combined(cw):
    put(cw, "EngineCPUUtilization", node("demo-001"), [20.0, 30.0])
    put(cw, "EngineCPUUtilization", node("demo-002"), [50.0, 10.0])
    put(cw, "CurrConnections", node("demo-001"), [5.0, 5.0])
    put(cw, "CurrConnections", node("demo-002"), [7.0, 3.0])
    put(cw, "Evictions", node("demo-001"), [1.0, 2.0])
    put(cw, "Evictions", node("demo-002"), [3.0])
    put(cw, "CacheHits", node("other-001"), [1000.0])  # another cache: not counted
    cache = CacheFacts(
        "demo", REPLICATION_GROUP, "available", member_clusters=["demo-001", "demo-002"]
    )
    summary = fetch(cw, cache, 3600, now=NOW)
    cpu = summary.metrics["EngineCPUUtilization"]
    assert cpu.series == 2 and cpu.peak == 50.0  # the worst node
    conns = summary.metrics["CurrConnections"]
    assert conns.peak == 12.0 and conns.average == 10.0  # summed per timestamp
    assert summary.metrics["Evictions"].total == 6.0
    assert summary.metrics["CacheHits"].points == 0
    judged = {j.name: j for j in judge(summary, Thresholds())}
    assert not judged["cpu"].breached and judged["evictions"].breached
    assert "hit-rate" not in judged  # no lookups in CloudWatch: INFO judges it instead


def test_cpu_at_the_limit_breaches_and_flags_move_it(cw):
    put(cw, "CPUUtilization", {"CacheClusterId": "solo"}, [70.0])
    cache = CacheFacts("solo", "cache-cluster", "available")
    summary = fetch(cw, cache, 3600, now=NOW)
    assert {j.name: j.breached for j in judge(summary, Thresholds())} == {"cpu": True}
    assert {j.name: j.breached for j in judge(summary, Thresholds(max_cpu=80))} == {"cpu": False}


def test_serverless_metrics(cw):
    dims = {"clusterId": "demo"}
    put(cw, "ElastiCacheProcessingUnits", dims, [1000.0, 2000.0])
    put(cw, "BytesUsedForCache", dims, [1e6, 2e6])
    put(cw, "ThrottledCmds", dims, [0.0, 4.0])
    put(cw, "CacheHits", dims, [95.0])
    put(cw, "CacheMisses", dims, [5.0])
    cache = CacheFacts("demo", SERVERLESS, "available")
    summary = fetch(cw, cache, 3600, now=NOW)
    assert summary.metrics["ElastiCacheProcessingUnits"].total == 3000.0
    assert summary.metrics["BytesUsedForCache"].peak == 2e6
    assert "CPUUtilization" not in summary.metrics
    judged = {j.name: j for j in judge(summary, Thresholds())}
    assert judged["throttled"].breached and judged["throttled"].value == 4.0
    assert judged["hit-rate"].value == 95.0 and not judged["hit-rate"].breached
    assert "cpu" not in judged


def test_no_data_judges_nothing(cw):
    summary = fetch(cw, CacheFacts("quiet", "cache-cluster", "available"), 3600, now=NOW)
    assert all(m.points == 0 for m in summary.metrics.values())
    assert judge(summary, Thresholds()) == []


def stats_node(**kw) -> NodeStats:
    base = dict(
        address="a:1",
        role="master",
        used_memory=100,
        maxmemory=1000,
        evicted_keys=0,
        keyspace_hits=0,
        keyspace_misses=0,
        connected_clients=1,
        ops_per_sec=5,
        keys=10,
    )
    base.update(kw)
    return NodeStats(**base)


def test_summarize_sums_primaries_and_takes_the_worst_lag():
    nodes = [
        stats_node(address="a:1", keyspace_hits=90, keyspace_misses=10, repl_lag_s=1),
        stats_node(
            address="b:1", keyspace_hits=0, keyspace_misses=100, repl_lag_s=3, evicted_keys=4
        ),
    ]
    info = summarize(nodes, cluster=True)
    assert info.role == "cluster (2 primaries)"
    assert info.hit_rate == 45.0 and info.evicted_keys == 4
    assert info.used_memory == 200 and info.keys == 20 and info.repl_lag_s == 3
    report = build_report("x", info, None, "skipped", Thresholds())
    assert report.breached and {j.name for j in report.judgements if j.breached} == {
        "evictions",
        "hit-rate",
    }


def test_watch_delta_and_judgement():
    before = summarize([stats_node(keyspace_hits=10, keyspace_misses=0)], cluster=False)
    after = summarize(
        [stats_node(keyspace_hits=60, keyspace_misses=150, evicted_keys=2)], cluster=False
    )
    row = delta(before, after)
    assert row["hits"] == 50 and row["misses"] == 150 and row["hit_rate"] == 25.0
    assert row["evicted"] == 2
    assert judge_delta(row, Thresholds()) == ["evictions", "hit-rate"]
    # a restarted server: counters start again, never negative
    assert delta(after, before)["evicted"] == 0
    assert isinstance(after, InfoSummary)
