"""`ttl`: TTLs of named keys, or over a pattern a histogram, the keys without expiry and
the keys above an expected maximum (the guide's OTP keys must live <= 300 s)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.redis import RedisTarget
from closeup_ops.ops.keyspace.encode import key_text, ttl_seconds
from closeup_ops.ops.keyspace.keys import (
    PTTL,
    _refusal,
    guard,
    scan_primaries,
    unmoved,
)
from closeup_ops.ops.keyspace.scan import first_error, has_error
from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, ScanStats, ShardRead

SAMPLE = 10
# Upper bounds (seconds) of the histogram buckets: the guide's TTLs (300, 1800, 3600) and
# the usual "a day", "a week" sit on bucket edges.
BUCKETS = (10, 60, 300, 1800, 3600, 86400, 604800)


@dataclass
class KeyTtl:
    key: str
    ttl: int  # seconds, as TTL answers: -1 no expiry, -2 missing
    ttl_ms: int
    above_max: bool = False


@dataclass
class KeysTtl:
    endpoint: str
    keys: list[KeyTtl]
    expect_max: int | None = None
    ok: bool = True


def bucket_label(upper: int | None, lower: int) -> str:
    def short(s: int) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= size and s % size == 0:
                return f"{s // size}{unit}"
        return f"{s}s"

    if upper is None:
        return f"> {short(lower)}"
    return f"{short(lower)}-{short(upper)}" if lower else f"<= {short(upper)}"


@dataclass
class Bucket:
    label: str
    max_seconds: int | None  # None: the open-ended last bucket
    count: int


@dataclass
class TtlReport:
    endpoint: str
    pattern: str
    type: str | None
    nodes: int
    keys: int
    with_ttl: int
    no_expiry: int
    min_ttl: int | None
    max_ttl: int | None
    histogram: list[Bucket]
    no_expiry_sample: list[str] = field(default_factory=list)
    expect_max: int | None = None
    above_max: int = 0
    above_max_sample: list[KeyTtl] = field(default_factory=list)
    ok: bool = True
    shards: list[ShardRead] = field(default_factory=list)
    parallel: int = 0  # shards worked at once
    slot_map_changed: bool | None = None


def key_ttls(target: RedisTarget, keys: list[str], expect_max: int | None = None) -> KeysTtl:
    """PTTL of each named key, pipelined (the cluster client routes each key's slot)."""
    pipe = target.client.pipeline(transaction=False)
    raw = [k.encode("utf-8", "surrogateescape") for k in keys]
    for key in raw:
        pipe.pttl(key)
    replies = pipe.execute()
    out = []
    for key, ms in zip(raw, replies, strict=False):
        ms = int(ms)
        above = expect_max is not None and (ms == -1 or ttl_seconds(ms) > expect_max)
        out.append(KeyTtl(key_text(key), ttl_seconds(ms), ms, above))
    return KeysTtl(target.endpoint, out, expect_max, ok=not any(k.above_max for k in out))


def ttl_report(
    target: RedisTarget,
    spec: ScanSpec,
    expect_max: int | None = None,
    progress: Callable[[ScanStats], None] | None = None,
    reach: Reach = Reach(),
) -> TtlReport:
    """Every matching key's PTTL (pipelined behind each SCAN), aggregated as it streams."""
    stats = ScanStats()
    counts = [0] * (len(BUCKETS) + 1)
    report = TtlReport(
        target.endpoint, spec.pattern, spec.type, 0, 0, 0, 0, None, None, [], expect_max=expect_max
    )
    limit_ms = None if expect_max is None else expect_max * 1000 + 499  # TTL rounding
    with guard(stats):
        for address, keys, ttls in scan_primaries(
            target, spec, stats, lambda keys: (PTTL(keys), len(keys)), progress, reach
        ):
            if has_error(ttls):
                ttls = unmoved(ttls, stats)
            _add(report, counts, keys, ttls, limit_ms, address)
    report.nodes = stats.nodes
    report.shards, report.slot_map_changed = stats.shards, stats.slot_map_changed
    report.parallel = stats.parallel
    report.histogram = _histogram(counts, report.no_expiry)
    report.ok = expect_max is None or (report.no_expiry == 0 and report.above_max == 0)
    return report


def _add(
    report: TtlReport,
    counts: list[int],
    keys: list[bytes],
    ttls: list[Any],
    limit_ms: int | None,
    address: str,
) -> None:
    if has_error(ttls):
        raise _refusal(address, first_error(ttls))
    for key, ms in zip(keys, ttls, strict=False):
        if ms == -2:  # expired or deleted since SCAN saw it
            continue
        report.keys += 1
        if ms == -1:
            report.no_expiry += 1
            if len(report.no_expiry_sample) < SAMPLE:
                report.no_expiry_sample.append(key_text(key))
            continue
        report.with_ttl += 1
        seconds = ttl_seconds(ms)
        if report.min_ttl is None or seconds < report.min_ttl:
            report.min_ttl = seconds
        if report.max_ttl is None or seconds > report.max_ttl:
            report.max_ttl = seconds
        counts[_bucket(seconds)] += 1
        if limit_ms is not None and ms > limit_ms:
            report.above_max += 1
            if len(report.above_max_sample) < SAMPLE:
                report.above_max_sample.append(KeyTtl(key_text(key), seconds, ms, True))


def _bucket(seconds: int) -> int:
    return bisect_left(BUCKETS, seconds)  # the first bucket whose upper bound >= seconds


def _histogram(counts: list[int], no_expiry: int) -> list[Bucket]:
    out = [Bucket("no expiry", None, no_expiry)]
    lower = 0
    for upper, count in zip(BUCKETS, counts, strict=False):
        out.append(Bucket(bucket_label(upper, lower), upper, count))
        lower = upper
    out.append(Bucket(bucket_label(None, lower), None, counts[-1]))
    return out
