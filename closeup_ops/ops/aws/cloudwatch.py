"""CloudWatch metrics of one ElastiCache cache over a window, for `stats`.

The metric series are discovered with ListMetrics (node-based caches publish per node,
with CacheClusterId and CacheNodeId; serverless caches with clusterId) and fetched with one
GetMetricData call per 500 series. Series are combined across nodes: counters are summed,
CPU takes the worst node, connections and bytes are summed per timestamp.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.aws.lookup import SERVERLESS, CacheFacts
from closeup_ops.ops.thresholds import Judgement, Thresholds, hit_rate_judgement

NAMESPACE = "AWS/ElastiCache"
# metric -> (statistic, how nodes combine: "sum" counter total, "max"/"add" gauge per time)
NODE_METRICS = {
    "CPUUtilization": ("Average", "max"),
    "EngineCPUUtilization": ("Average", "max"),
    "CurrConnections": ("Average", "add"),
    "Evictions": ("Sum", "sum"),
    "CacheHits": ("Sum", "sum"),
    "CacheMisses": ("Sum", "sum"),
}
SERVERLESS_METRICS = {
    "ElastiCacheProcessingUnits": ("Sum", "sum"),
    "BytesUsedForCache": ("Average", "add"),
    "ThrottledCmds": ("Sum", "sum"),
    "CurrConnections": ("Average", "add"),
    "Evictions": ("Sum", "sum"),
    "CacheHits": ("Sum", "sum"),
    "CacheMisses": ("Sum", "sum"),
}


@dataclass
class MetricSummary:
    name: str
    statistic: str
    series: int  # how many node series were combined
    points: int
    total: float | None = None  # counters: the sum over the window
    average: float | None = None  # gauges: mean of the combined per-period values
    peak: float | None = None
    peak_at: str | None = None
    latest: float | None = None


@dataclass
class CloudWatchSummary:
    cache: str
    kind: str
    since_s: int
    period_s: int
    metrics: dict[str, MetricSummary]
    # what CloudWatch could not say (no series, or no datapoints): never reported as zero
    notes: list[str] = field(default_factory=list)


def period_for(since_s: int) -> int:
    """A period that keeps a series under 1440 points, in whole minutes."""
    return max(60, math.ceil(since_s / 1440 / 60) * 60)


def _series(cw: Any, cache: CacheFacts, wanted: dict[str, tuple[str, str]]) -> list[dict]:
    """One dimension set per series. ElastiCache publishes a node-based cache's metrics
    twice: per node ({CacheClusterId, CacheNodeId}) and per cluster ({CacheClusterId}),
    the same data at two levels; adding both doubles every counter. Per (metric, cluster)
    the node-level series are kept when there are any, else the cluster-level one. Serverless
    caches publish under {clusterId}."""
    found: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for name, value in cache.metric_dimensions():
        if name == "ReplicationGroupId":  # node metrics carry the member cluster id
            continue
        pages = cw.get_paginator("list_metrics").paginate(
            Namespace=NAMESPACE, Dimensions=[{"Name": name, "Value": value}]
        )
        for page in pages:
            for metric in page.get("Metrics", []):
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                if metric["MetricName"] in wanted and dims.get(name) == value:
                    found[(metric["MetricName"], value)].append(metric)
    out: list[dict] = []
    for (_, _), listed in sorted(found.items()):
        unique = {frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]): m for m in listed}
        series = list(unique.values())
        names = [{d["Name"] for d in m.get("Dimensions", [])} for m in series]
        nodes = [m for m, n in zip(series, names, strict=True) if "CacheNodeId" in n]
        level = [m for m, n in zip(series, names, strict=True) if len(n) == 1]
        out += nodes or level[:1] or series[:1]
    return out


def fetch(
    cw: Any, cache: CacheFacts, since_s: int, now: dt.datetime | None = None
) -> CloudWatchSummary:
    wanted = SERVERLESS_METRICS if cache.kind == SERVERLESS else NODE_METRICS
    end = now or dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(seconds=since_s)
    period = period_for(since_s)
    series = _series(cw, cache, wanted)
    points: dict[str, list[list[tuple[dt.datetime, float]]]] = defaultdict(list)
    for batch_start in range(0, len(series), 500):
        batch = series[batch_start : batch_start + 500]
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {"Metric": m, "Period": period, "Stat": wanted[m["MetricName"]][0]},
                "ReturnData": True,
            }
            for i, m in enumerate(batch)
        ]
        results = _metric_data(cw, queries, start, end)
        for i, metric in enumerate(batch):
            got = results.get(f"m{i}", [])
            points[metric["MetricName"]].append(got)
    metrics = {name: _combine(name, wanted[name], points.get(name, [])) for name in wanted}
    return CloudWatchSummary(
        cache.name, cache.kind, since_s, period, metrics, _no_data_notes(cache, metrics, since_s)
    )


def _no_data_notes(cache: CacheFacts, metrics: dict[str, MetricSummary], since_s: int) -> list[str]:
    dims = ", ".join(f"{n}={v}" for n, v in cache.metric_dimensions() if n != "ReplicationGroupId")
    empty = [m.name for m in metrics.values() if not m.points]
    if not empty:
        return []
    where = f"{NAMESPACE} {dims}, last {span(since_s)}"
    if len(empty) == len(metrics):
        return [
            f"CloudWatch has no datapoints for {cache.name} ({where}): nothing is judged "
            "from CloudWatch; check the cache name, region and that it has been running"
        ]
    return [f"no CloudWatch datapoints for {', '.join(empty)} ({where}): not judged, not zero"]


def _metric_data(
    cw: Any, queries: list[dict], start: dt.datetime, end: dt.datetime
) -> dict[str, list[tuple[dt.datetime, float]]]:
    out: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
    while True:
        page = cw.get_metric_data(**kwargs)
        for result in page.get("MetricDataResults", []):
            out[result["Id"]] += list(
                zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
            )
        if not page.get("NextToken"):
            return out
        kwargs["NextToken"] = page["NextToken"]


def _combine(
    name: str, how: tuple[str, str], series: list[list[tuple[dt.datetime, float]]]
) -> MetricSummary:
    stat, mode = how
    count = sum(len(s) for s in series)
    summary = MetricSummary(name, stat, len(series), count)
    if not count:
        return summary
    if mode == "sum":
        summary.total = round(sum(v for s in series for _, v in s), 3)
        return summary
    by_time: dict[dt.datetime, list[float]] = defaultdict(list)
    for s in series:
        for when, value in s:
            by_time[when].append(value)
    combined = sorted(
        (when, max(vals) if mode == "max" else sum(vals)) for when, vals in by_time.items()
    )
    values = [v for _, v in combined]
    peak_at, peak = max(combined, key=lambda item: item[1])
    summary.average = round(sum(values) / len(values), 3)
    summary.peak, summary.peak_at = round(peak, 3), peak_at.isoformat(timespec="minutes")
    summary.latest = round(values[-1], 3)
    return summary


def judge(cwsum: CloudWatchSummary, limits: Thresholds) -> list[Judgement]:
    m = cwsum.metrics
    window = f"over the last {span(cwsum.since_s)}"
    out: list[Judgement] = []
    cpu = next(
        (
            m[n]
            for n in ("EngineCPUUtilization", "CPUUtilization")
            if n in m and m[n].peak is not None
        ),
        None,
    )
    if cpu is not None:
        out.append(
            Judgement(
                "cpu",
                "cloudwatch",
                cpu.peak,
                limits.max_cpu,
                cpu.peak >= limits.max_cpu,
                f"{cpu.name} peak {cpu.peak:.1f}% ({span(cwsum.period_s)} average, "
                f"{cpu.peak_at}) {window} (limit {limits.max_cpu:g}%)",
            )
        )
    evictions = m.get("Evictions")
    if evictions is not None and evictions.total is not None:
        out.append(
            Judgement(
                "evictions",
                "cloudwatch",
                evictions.total,
                limits.max_evictions,
                evictions.total > limits.max_evictions,
                f"{evictions.total:.0f} evictions {window} (limit {limits.max_evictions})",
            )
        )
    hits, misses = m.get("CacheHits"), m.get("CacheMisses")
    if hits is not None and misses is not None and (hits.total or misses.total):
        out.append(
            hit_rate_judgement("cloudwatch", hits.total or 0, misses.total or 0, limits, window)
        )
    throttled = m.get("ThrottledCmds")
    if throttled is not None and throttled.total is not None:
        out.append(
            Judgement(
                "throttled",
                "cloudwatch",
                throttled.total,
                limits.max_throttled,
                throttled.total > limits.max_throttled,
                f"{throttled.total:.0f} throttled commands {window} "
                f"(limit {limits.max_throttled}; raise the cache's ECPU limit)",
            )
        )
    return out


def span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
