"""What-ifs on the same usage: the cache on Valkey, serverless vs the smallest node-based
layout that holds the peak memory with one replica (and the break-even point), and the
storage carried by keys without a TTL (from a sampled keyspace summary).

A node holds its memory minus ElastiCache's default reserved memory (reserved-memory-percent
25, AWS "Managing reserved memory"); the layout ignores throughput: a node type that holds
the data may still be too small for the request rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.aws.cost import (
    HOURS_PER_MONTH,
    Line,
    Scenario,
    Usage,
    Window,
    _scenario,
    node_lines,
    serverless_lines,
)
from closeup_ops.ops.aws.prices import PriceBook

RESERVED_MEMORY = 0.25
MAX_SHARDS = 500  # ElastiCache's shard limit per cluster


@dataclass
class Layout:
    node_type: str
    shards: int
    nodes: int  # shards x (primary + one replica)
    memory_gib: float  # per node
    usable_gib: float  # per node, after reserved memory
    hourly_usd: float  # per node
    month_usd: float
    price_source: str


@dataclass
class BreakEven:
    serverless: str  # scenario names compared
    nodes: str
    nodes_month_usd: float
    serverless_storage_month_usd: float
    ecpu_price_usd_per_million: float
    # serverless costs less while it uses fewer ECPUs than this a month; None: never
    break_even_million_ecpus_per_month: float | None
    current_million_ecpus_per_month: float | None  # None: not known (node-based cache)
    cheaper_now: str  # "serverless" | "nodes" | "unknown"
    text: str


@dataclass
class NoTtlNamespace:
    namespace: str
    keys_sampled: int
    keys_without_ttl: int
    est_bytes_without_ttl: float | None


@dataclass
class NoTtl:
    sampled_keys: int
    sample_limit: int
    share: float  # of the sampled memory (or keys, when MEMORY USAGE is refused) without TTL
    weighted_by: str  # "memory" | "keys"
    est_gib: float | None  # share x the average data stored
    month_usd: float | None  # serverless: share x the data-stored month
    namespaces: list[NoTtlNamespace] = field(default_factory=list)
    note: str = ""


def smallest_layout(peak_gib: float | None, book: PriceBook) -> Layout | None:
    """The cheapest node type and shard count whose usable memory holds `peak_gib`, each
    shard a primary and one replica."""
    if peak_gib is None:
        return None
    best: Layout | None = None
    for node in book.nodes.values():
        if not node.memory_gib:
            continue
        usable = node.memory_gib * (1 - RESERVED_MEMORY)
        shards = max(1, math.ceil(peak_gib / usable))
        if shards > MAX_SHARDS:
            continue
        month = shards * 2 * HOURS_PER_MONTH * node.hourly.usd
        candidate = Layout(
            node.node_type,
            shards,
            shards * 2,
            node.memory_gib,
            round(usable, 3),
            node.hourly.usd,
            round(month, 2),
            node.hourly.source,
        )
        if best is None or (month, candidate.nodes) < (best.month_usd, best.nodes):
            best = candidate
    return best


def layout_scenario(
    layout: Layout | None, book: PriceBook, peak_gib: float | None, window_hours: int
) -> Scenario:
    """The layout as a scenario: the window as if its nodes had run every hour of it."""
    name = "smallest node-based layout with one replica"
    if layout is None:
        why = (
            "no peak memory (no BytesUsedForCache data)"
            if peak_gib is None
            else f"no node type with a price and memory for {book.engine} in {book.region} "
            f"({book.label})"
        )
        return Scenario(name, "nodes", book.engine, [], None, None, [why])
    line = Line(
        f"{layout.node_type} x {layout.nodes} nodes ({layout.shards} shard"
        f"{'s' if layout.shards != 1 else ''} x primary + replica)",
        layout.nodes * HOURS_PER_MONTH,
        "node-hours a month",
        f"peak data stored {peak_gib:.3f} GB (BytesUsedForCache); {layout.usable_gib:g} GB "
        f"usable per node ({layout.memory_gib:g} GB less {RESERVED_MEMORY:.0%} reserved memory)",
        layout.hourly_usd,
        "USD per node-hour",
        layout.price_source,
        round(layout.nodes * window_hours * layout.hourly_usd, 6),
        layout.month_usd,
    )
    return Scenario(name, "nodes", book.engine, [line], line.window_usd, layout.month_usd)


def break_even(
    serverless: Scenario, nodes: Scenario, current_ecpu_month: float | None
) -> BreakEven | None:
    """Serverless vs nodes: the monthly ECPUs at which both cost the same, storage held at
    this cache's own."""
    stored = next((ln for ln in serverless.lines if ln.item == "data stored"), None)
    ecpus = next((ln for ln in serverless.lines if ln.item == "ECPUs"), None)
    if (
        stored is None
        or stored.month_usd is None
        or ecpus is None
        or not ecpus.price_usd
        or nodes.month_usd is None
    ):
        return None
    room = nodes.month_usd - stored.month_usd
    point = round(room / ecpus.price_usd, 1) if room > 0 else None
    if point is None:
        cheaper = "nodes"
        text = (
            f"{nodes.name} (USD {nodes.month_usd:,.2f} a month) costs less than "
            f"{serverless.name}'s data stored alone (USD {stored.month_usd:,.2f} a month)"
        )
    else:
        if current_ecpu_month is None:
            cheaper = "unknown"
            now = "this cache's ECPUs are not known (node-based: no ECPU metric)"
        else:
            cheaper = "serverless" if current_ecpu_month < point else "nodes"
            now = f"now {current_ecpu_month:,.1f} million a month"
        text = (
            f"{serverless.name} costs less than {nodes.name} (USD {nodes.month_usd:,.2f} a "
            f"month) below {point:,.1f} million ECPUs a month ({now})"
        )
    return BreakEven(
        serverless.name,
        nodes.name,
        nodes.month_usd,
        stored.month_usd,
        ecpus.price_usd,
        point,
        current_ecpu_month,
        cheaper,
        text,
    )


def serverless_whatif(
    name: str, usage: Usage, book: PriceBook, window: Window, ecpus_known: bool
) -> Scenario:
    """The same data (and ECPUs, when known) on serverless with `book`'s engine and prices."""
    lines = serverless_lines(usage, book, book.engine, window.hours_with_data)
    if ecpus_known:
        return _scenario(name, "serverless", book.engine, lines, ["assumes the same ECPUs"])
    for line in lines:
        if line.item == "ECPUs":
            line.source_metric = "not known: node-based caches publish no ECPU metric"
            line.window_usd = line.month_usd = None
            line.missing = "ECPUs: not known for a node-based cache (see the break-even point)"
    return _scenario(name, "serverless", book.engine, lines, [])


def nodes_whatif(name: str, usage: Usage, book: PriceBook) -> Scenario:
    return _scenario(name, "nodes", book.engine, node_lines(usage.nodes, book), [])


def no_ttl_from_summary(
    summary: Any, limit: int, avg_gib: float | None, stored_month_usd: float | None
) -> NoTtl:
    """The share of the sampled keyspace without a TTL and what it carries.

    Per namespace the bytes without TTL are estimated as the namespace's sampled bytes x
    its share of keys without TTL (the summary keeps bytes per namespace, not per TTL)."""
    by_memory = summary.total_bytes is not None and summary.total_bytes > 0
    namespaces = []
    no_ttl = 0.0
    for ns in summary.namespaces:
        if not ns.without_ttl:
            continue
        est = None
        if by_memory and ns.total_bytes is not None and ns.keys:
            est = ns.total_bytes * ns.without_ttl / ns.keys
            no_ttl += est
        namespaces.append(NoTtlNamespace(ns.namespace, ns.keys, ns.without_ttl, est))
    if by_memory:
        share = no_ttl / summary.total_bytes
        weighted = "memory"
    else:
        share = summary.without_ttl / summary.keys if summary.keys else 0.0
        weighted = "keys"
    note = f"sampled {summary.keys} keys (SCAN, at most {limit}; not a full scan)" + (
        "" if by_memory else "; MEMORY USAGE unavailable: share of keys, not of memory"
    )
    namespaces.sort(key=lambda n: -(n.est_bytes_without_ttl or n.keys_without_ttl))
    return NoTtl(
        sampled_keys=summary.keys,
        sample_limit=limit,
        share=round(share, 4),
        weighted_by=weighted,
        est_gib=None if avg_gib is None else round(share * avg_gib, 6),
        month_usd=None if stored_month_usd is None else round(share * stored_month_usd, 2),
        namespaces=namespaces,
        note=note,
    )
