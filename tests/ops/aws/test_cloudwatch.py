"""CloudWatch for `stats`: one dimension set per series, the serverless dimension, and "no
data" said as such (moto's CloudWatch holds what the test puts).

ElastiCache publishes each node-based metric at two levels (AWS docs, "Metrics for Valkey and
Redis OSS"; the CDK's canned ElastiCache metrics list both): {CacheClusterId, CacheNodeId}
per node and {CacheClusterId} per cluster, the same numbers. Serverless caches publish under
{clusterId}. The test publishes both levels, as AWS does, and expects each node counted once.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import REGION

from closeup_ops.ops.aws.cloudwatch import fetch, judge
from closeup_ops.ops.aws.lookup import REPLICATION_GROUP, SERVERLESS, CacheFacts
from closeup_ops.ops.thresholds import Thresholds

aws_env = aws_helpers.aws_env
NOW = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)


@pytest.fixture
def cw(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


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


def publish_both_levels(cw, name: str, cluster: str, values: list[float]) -> None:
    put(cw, name, {"CacheClusterId": cluster, "CacheNodeId": "0001"}, values)
    put(cw, name, {"CacheClusterId": cluster}, values)


def test_a_metric_published_per_node_and_per_cluster_is_counted_once(cw):
    evictions = {"demo-001": [4.0, 6.0], "demo-002": [5.0]}
    hits = {"demo-001": [900.0], "demo-002": [50.0]}
    misses = {"demo-001": [40.0], "demo-002": [10.0]}
    connections = {"demo-001": [10.0, 10.0], "demo-002": [20.0, 20.0]}
    for cluster in ("demo-001", "demo-002"):
        publish_both_levels(cw, "Evictions", cluster, evictions[cluster])
        publish_both_levels(cw, "CacheHits", cluster, hits[cluster])
        publish_both_levels(cw, "CacheMisses", cluster, misses[cluster])
        publish_both_levels(cw, "CurrConnections", cluster, connections[cluster])
    cache = CacheFacts(
        "demo", REPLICATION_GROUP, "available", member_clusters=["demo-001", "demo-002"]
    )
    summary = fetch(cw, cache, 3600, now=NOW)
    m = summary.metrics
    assert m["Evictions"].total == sum(sum(v) for v in evictions.values())  # 15, not 30
    assert m["Evictions"].series == 2  # one per node
    assert m["CacheHits"].total == 950.0 and m["CacheMisses"].total == 50.0
    assert m["CurrConnections"].peak == 30.0  # 10 + 20 at the same minute, not 60
    judged = {j.name: j for j in judge(summary, Thresholds(max_evictions=20))}
    assert not judged["evictions"].breached  # 30 would have breached falsely
    assert judged["hit-rate"].value == 95.0


def test_a_cluster_level_series_alone_is_used(cw):
    put(cw, "Evictions", {"CacheClusterId": "solo"}, [3.0])
    summary = fetch(cw, CacheFacts("solo", "cache-cluster", "available"), 3600, now=NOW)
    assert summary.metrics["Evictions"].total == 3.0


def test_serverless_uses_the_cluster_id_dimension(cw):
    put(cw, "ElastiCacheProcessingUnits", {"clusterId": "sess"}, [100.0, 200.0])
    put(cw, "ElastiCacheProcessingUnits", {"CacheClusterId": "sess"}, [9999.0])  # not it
    summary = fetch(cw, CacheFacts("sess", SERVERLESS, "available"), 3600, now=NOW)
    assert summary.metrics["ElastiCacheProcessingUnits"].total == 300.0


def test_no_data_is_said_not_reported_as_zero(cw):
    put(cw, "CacheHits", {"CacheClusterId": "half", "CacheNodeId": "0001"}, [10.0])
    summary = fetch(cw, CacheFacts("half", "cache-cluster", "available"), 3600, now=NOW)
    assert summary.metrics["Evictions"].total is None and summary.metrics["Evictions"].points == 0
    assert len(summary.notes) == 1 and "Evictions" in summary.notes[0]
    assert "CacheHits" not in summary.notes[0]
    assert "evictions" not in {j.name for j in judge(summary, Thresholds())}
    quiet = fetch(cw, CacheFacts("quiet", "cache-cluster", "available"), 3600, now=NOW)
    assert len(quiet.notes) == 1 and "no datapoints for quiet" in quiet.notes[0]
    assert judge(quiet, Thresholds()) == []
