"""What a cache costs, from its own usage over a window, projected to a 30-day month.

Serverless (AWS pricing page and the AWS Database Blog on ElastiCache Serverless pricing):
data stored is billed in GB-hours from the hourly average of the data in the cache, with a
minimum metered storage each hour (1 GB for Redis OSS and Memcached, 100 MB for Valkey);
requests in ECPUs, priced per million. CloudWatch gives both: BytesUsedForCache (Average,
1-hour periods) and ElastiCacheProcessingUnits (Sum), dimension clusterId.

Node-based: every node, replicas included, is billed per node-hour at the on-demand price
of its node type; partial hours count as whole hours. Node-hours come from each node's
creation time (DescribeCacheClusters): a node type changed inside the window is not seen.

GB here is GiB (2**30 bytes: AWS bills serverless storage in "GiB-hours"), and 100 MB is
100 MiB. Data transfer is never priced; backup storage is listed, not priced. The what-ifs
are in cost_whatif.py.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.cache_ref import SERVERLESS, CacheRef
from closeup_ops.ops.aws.prices import Price, PriceBook

GIB = 1024**3
HOURS_PER_MONTH = 720  # a 30-day month
# minimum metered storage per hour, GiB, by engine (AWS ElastiCache pricing page)
MIN_METERED_GIB = {"redis": 1.0, "memcached": 1.0, "valkey": 100 / 1024}
NAMESPACE = "AWS/ElastiCache"
DATA_TRANSFER = "data transfer: left out (not in any CloudWatch metric of the cache; see the bill)"


@dataclass
class Window:
    start: str
    end: str
    hours: int  # whole hours in the window
    hours_with_data: int  # hours that have a usage data point (serverless) or a node


@dataclass
class Line:
    item: str
    quantity: float
    unit: str  # of the quantity: "GB-hours", "million ECPUs", "node-hours"
    source_metric: str
    price_usd: float | None  # per unit of `price_unit`; None: no price (line left out)
    price_unit: str | None
    price_source: str | None
    window_usd: float | None
    month_usd: float | None
    missing: str | None = None  # why there is no price


@dataclass
class Scenario:
    name: str
    kind: str  # "serverless" | "nodes"
    engine: str
    lines: list[Line]
    window_usd: float | None
    month_usd: float | None
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Node:
    cluster: str
    node_id: str
    node_type: str
    created: str | None
    hours: int  # node-hours in the window


@dataclass
class Usage:
    """What CloudWatch and ElastiCache say the cache used over the window."""

    hourly_gib: list[tuple[str, float]]  # (hour start, GiB) data stored, hourly average
    ecpus: float | None  # serverless only
    peak_gib: float | None
    nodes: list[Node] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def min_metered_gib(engine: str) -> float | None:
    return MIN_METERED_GIB.get(engine.lower())


def window_for(since_s: int, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Whole hours: from `since` (rounded up to hours) before the last full hour, to it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    end = now.replace(minute=0, second=0, microsecond=0)
    hours = max(1, math.ceil(since_s / 3600))
    return end - dt.timedelta(hours=hours), end


def hourly(
    cw: Any,
    queries: dict[str, tuple[str, str, list[dict[str, str]]]],
    start: dt.datetime,
    end: dt.datetime,
) -> dict[str, dict[dt.datetime, float]]:
    """{id: {hour: value}} for {id: (metric, statistic, dimensions)}, 1-hour periods."""
    built = [
        {
            "Id": qid,
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims},
                "Period": 3600,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for qid, (metric, stat, dims) in queries.items()
    ]
    out: dict[str, dict[dt.datetime, float]] = {qid: {} for qid in queries}
    for first in range(0, len(built), 500):
        kwargs: dict[str, Any] = {
            "MetricDataQueries": built[first : first + 500],
            "StartTime": start,
            "EndTime": end,
        }
        while True:
            page = cw.get_metric_data(**kwargs)
            for result in page.get("MetricDataResults", []):
                for when, value in zip(
                    result.get("Timestamps", []), result.get("Values", []), strict=False
                ):
                    out[result["Id"]][when] = value
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return out


def _iso(when: Any) -> str | None:
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.timezone.utc).isoformat(timespec="minutes")
    return None if when is None else str(when)


def serverless_usage(cw: Any, ref: CacheRef, start: dt.datetime, end: dt.datetime) -> Usage:
    dims = [{"Name": "clusterId", "Value": ref.name}]
    got = hourly(
        cw,
        {
            "bytes": ("BytesUsedForCache", "Average", dims),
            "ecpus": ("ElastiCacheProcessingUnits", "Sum", dims),
        },
        start,
        end,
    )
    series = sorted(got["bytes"].items())
    hourly_gib = [(_iso(t) or "", v / GIB) for t, v in series]
    return Usage(
        hourly_gib=hourly_gib,
        ecpus=sum(got["ecpus"].values()) if got["ecpus"] else None,
        peak_gib=max((g for _, g in hourly_gib), default=None),
    )


def _members(ref: CacheRef) -> list[dict[str, Any]]:
    """The member clusters as DescribeCacheClusters has them; when it did not describe them,
    the replication group's own node list (no creation times)."""
    if ref.kind == "cache-cluster":
        return [ref.raw]
    if ref.raw.get("_members"):
        return list(ref.raw["_members"])
    return [
        {
            "CacheClusterId": m["CacheClusterId"],
            "CacheNodes": [{"CacheNodeId": m.get("CacheNodeId", "0001")}],
        }
        for g in ref.raw.get("NodeGroups") or []
        for m in g.get("NodeGroupMembers") or []
        if m.get("CacheClusterId")
    ]


def _primaries(ref: CacheRef) -> tuple[list[str], str | None]:
    """One member cluster per shard (its primary when the roles are known, else its first
    member: a replica holds the same data), and a note when there are no shards to go by."""
    if ref.kind == "cache-cluster":
        return [ref.name], None
    picked = []
    for group in ref.raw.get("NodeGroups") or []:
        members = [m for m in group.get("NodeGroupMembers") or [] if m.get("CacheClusterId")]
        primary = [m for m in members if m.get("CurrentRole") == "primary"]
        if primary or members:
            picked.append((primary or members)[0]["CacheClusterId"])
    if picked:
        return picked, None
    members = [m.get("CacheClusterId") for m in _members(ref) if m.get("CacheClusterId")]
    return members, "shards unknown: data stored summed over every node, replicas included"


def node_usage(cw: Any, ref: CacheRef, start: dt.datetime, end: dt.datetime) -> Usage:
    notes: list[str] = []
    nodes: list[Node] = []
    for member in _members(ref):
        cluster = member.get("CacheClusterId", ref.name)
        node_type = member.get("CacheNodeType") or ref.node_type or "?"
        listed = member.get("CacheNodes") or [{"CacheNodeId": "0001"}]
        for node in listed:
            created = node.get("CacheNodeCreateTime") or member.get("CacheClusterCreateTime")
            since = start
            if isinstance(created, dt.datetime):
                since = max(start, created.astimezone(dt.timezone.utc))
            elif created is None:
                notes.append(f"{cluster}: no creation time; counted for the whole window")
            hours = max(0, math.ceil((end - since).total_seconds() / 3600))
            nodes.append(
                Node(cluster, node.get("CacheNodeId", "0001"), node_type, _iso(created), hours)
            )
    if not nodes:
        notes.append(f"{ref.name}: ElastiCache did not describe its nodes")
    primaries, note = _primaries(ref)
    if note:
        notes.append(note)
    queries = {
        f"b{i}": (
            "BytesUsedForCache",
            "Average",
            [{"Name": "CacheClusterId", "Value": c}, {"Name": "CacheNodeId", "Value": "0001"}],
        )
        for i, c in enumerate(primaries)
    }
    got = hourly(cw, queries, start, end) if queries else {}
    by_hour: dict[dt.datetime, float] = {}
    for values in got.values():
        for when, value in values.items():
            by_hour[when] = by_hour.get(when, 0.0) + value
    hourly_gib = [(_iso(t) or "", v / GIB) for t, v in sorted(by_hour.items())]
    return Usage(
        hourly_gib=hourly_gib,
        ecpus=None,
        peak_gib=max((g for _, g in hourly_gib), default=None),
        nodes=nodes,
        notes=notes,
    )


def _line(
    item: str,
    quantity: float,
    unit: str,
    metric: str,
    price: Price | None,
    missing: str,
    month_quantity: float | None,
) -> Line:
    if price is None:
        return Line(item, round(quantity, 6), unit, metric, None, None, None, None, None, missing)
    window = quantity * price.usd
    month = None if month_quantity is None else month_quantity * price.usd
    return Line(
        item,
        round(quantity, 6),
        unit,
        metric,
        price.usd,
        f"USD per {price.unit}",
        price.source,
        round(window, 6),
        None if month is None else round(month, 4),
    )


def _scenario(name: str, kind: str, engine: str, lines: list[Line], notes: list[str]) -> Scenario:
    priced = [ln for ln in lines if not ln.missing]
    left_out = [ln.missing for ln in lines if ln.missing]
    window = round(sum(ln.window_usd or 0 for ln in priced), 4) if priced else None
    months = [ln.month_usd for ln in priced]
    month = round(sum(m or 0 for m in months), 2) if priced and None not in months else None
    return Scenario(name, kind, engine, lines, window, month, left_out, notes)


def serverless_lines(
    usage: Usage, book: PriceBook, engine: str, hours_with_data: int
) -> list[Line]:
    """Data stored (minimum metered storage applied hour by hour) and ECPUs."""
    floor = min_metered_gib(engine)
    per_month = HOURS_PER_MONTH / hours_with_data if hours_with_data else None
    if floor is None:
        stored = sum(g for _, g in usage.hourly_gib)
        rule = "no minimum metered storage known for this engine"
    else:
        stored = sum(max(g, floor) for _, g in usage.hourly_gib)
        shown = "1 GB" if floor == 1.0 else f"{round(floor * 1024)} MB"
        rule = f"each hour at least {shown} (minimum metered storage, {engine})"
    lines = [
        _line(
            "data stored",
            stored,
            "GB-hours",
            f"BytesUsedForCache (Average, 1-hour periods; {len(usage.hourly_gib)} hours); {rule}",
            book.gb_hour,
            book.missing("serverless GB-hour"),
            None if per_month is None else stored * per_month,
        )
    ]
    ecpu_m = (usage.ecpus or 0.0) / 1_000_000
    lines.append(
        _line(
            "ECPUs",
            ecpu_m,
            "million ECPUs",
            "ElastiCacheProcessingUnits (Sum)"
            + ("" if usage.ecpus is not None else ": no data points in the window"),
            book.ecpu_million,
            book.missing("serverless ECPU"),
            None if per_month is None else ecpu_m * per_month,
        )
    )
    return lines


def node_lines(nodes: list[Node], book: PriceBook) -> list[Line]:
    """One line per node type: node-hours x the on-demand hourly price; a month is every
    current node running 720 hours."""
    by_type: dict[str, list[Node]] = {}
    for node in nodes:
        by_type.setdefault(node.node_type, []).append(node)
    lines = []
    for node_type, group in sorted(by_type.items()):
        node = book.nodes.get(node_type)
        hours = sum(n.hours for n in group)
        lines.append(
            _line(
                f"{node_type} x {len(group)} node{'s' if len(group) != 1 else ''}",
                hours,
                "node-hours",
                "DescribeCacheClusters: CacheNodeCreateTime of each node (replicas included)",
                None if node is None else node.hourly,
                book.missing(f"on-demand {node_type}"),
                len(group) * HOURS_PER_MONTH,
            )
        )
    return lines


def current_scenario(ref: CacheRef, usage: Usage, book: PriceBook, window: Window) -> Scenario:
    engine = (ref.engine or "redis").lower()
    if ref.kind == SERVERLESS:
        lines = serverless_lines(usage, book, engine, window.hours_with_data)
        return _scenario("this cache", "serverless", engine, lines, [])
    return _scenario("this cache", "nodes", engine, node_lines(usage.nodes, book), [])


def backup_note(snapshots: list[Any] | None, error: str | None) -> str:
    if snapshots is None:
        return f"backup storage: left out (snapshots not listed: {error})"
    if not snapshots:
        return "backup storage: no snapshots of this cache"
    sized = [s.size_bytes for s in snapshots if getattr(s, "size_bytes", None)]
    size = f", {sum(sized) / GIB:.3f} GB known" if sized else ""
    return (
        f"backup storage: {len(snapshots)} snapshot{'s' if len(snapshots) != 1 else ''}"
        f"{size}; not priced (the backup price and free allowance are not in the price source)"
    )
