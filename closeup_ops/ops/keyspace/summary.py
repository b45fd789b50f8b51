"""`keys --summary`: keys grouped by namespace with count, memory, TTL coverage and the
biggest key of each, plus the top N biggest keys overall (what `redis-cli --bigkeys` and
`--memkeys` report), all from one pass, so the namespace that holds keys without expiry
stands out.

Memory is MEMORY USAGE with the server's default SAMPLES (5), as `redis-cli --memkeys`
uses by default: exact for strings, an estimate for big collections, and never a walk of a
million-field hash on a production server (SAMPLES 0 would do that).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Any

from closeup_ops.connect.redis import RedisTarget
from closeup_ops.ops.keyspace.encode import key_text
from closeup_ops.ops.keyspace.keys import (
    PTTL,
    guard,
    scan_primaries,
    unmoved,
)
from closeup_ops.ops.keyspace.scan import (
    first_error,
    has_error,
    per_key_each,
)
from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, ScanStats, ShardRead

PTTL_AND_MEMORY = per_key_each([("PTTL",), ("MEMORY", "USAGE")])

NO_NAMESPACE = "(no namespace)"


@dataclass
class BigKey:
    key: str
    bytes: int
    ttl_ms: int
    namespace: str | None = None  # in the overall top list


@dataclass
class Namespace:
    namespace: str
    pattern: str
    keys: int
    total_bytes: int | None
    avg_bytes: float | None
    with_ttl: int
    without_ttl: int
    ttl_share: float
    biggest: BigKey | None = None


@dataclass
class Summary:
    endpoint: str
    pattern: str
    type: str | None
    separator: str
    depth: int
    nodes: int
    keys: int
    total_bytes: int | None
    with_ttl: int
    without_ttl: int
    memory_refused: str | None
    namespaces: list[Namespace]
    biggest: list[BigKey] = field(default_factory=list)  # the top N by MEMORY USAGE
    shards: list[ShardRead] = field(default_factory=list)
    parallel: int = 0  # shards worked at once
    slot_map_changed: bool | None = None

    @property
    def no_expiry_namespaces(self) -> list[Namespace]:
        return [ns for ns in self.namespaces if ns.without_ttl]


class _Acc:
    __slots__ = ("keys", "bytes", "with_ttl", "top")

    def __init__(self) -> None:
        self.keys = 0
        self.bytes = 0
        self.with_ttl = 0
        self.top: list[tuple[int, bytes, int]] = []


def namespace_of(key: bytes, sep: bytes, depth: int) -> bytes | None:
    """The first `depth` segments (fewer when the key has fewer); None without a separator."""
    parts = key.split(sep, depth)
    if len(parts) == 1:
        return None
    return sep.join(parts[: min(depth, len(parts) - 1)])


def summarize(
    target: RedisTarget,
    spec: ScanSpec,
    *,
    separator: str = ":",
    depth: int = 1,
    top: int = 10,
    progress: Callable[[ScanStats], None] | None = None,
    reach: Reach = Reach(),
) -> Summary:
    """One pass: per namespace count, bytes, TTL coverage and its biggest key; overall
    the `top` biggest keys."""
    sep = separator.encode()
    groups: dict[bytes | None, _Acc] = {}
    overall: list[tuple[int, bytes, int]] = []  # min-heap of (bytes, key, ttl_ms)
    stats = ScanStats()

    def extras(keys: list[bytes]) -> tuple[bytes, int]:
        if stats.memory_refused is None:
            return PTTL_AND_MEMORY(keys), 2 * len(keys)
        return PTTL(keys), len(keys)

    with guard(stats):
        for address, keys, replies in scan_primaries(target, spec, stats, extras, progress, reach):
            _add(groups, overall, keys, replies, sep, depth, top, stats, address)
    return _build(target, spec, separator, depth, groups, overall, stats)


def _add(
    groups: dict[bytes | None, _Acc],
    overall: list[tuple[int, bytes, int]],
    keys: list[bytes],
    replies: list[Any],
    sep: bytes,
    depth: int,
    top: int,
    stats: ScanStats,
    address: str,
) -> None:
    """Fold one batch in. Written for a million keys: the per-key work is C-level
    (comprehensions, Counter, compress); only the sums loop in Python."""
    n = len(keys)
    if not n:
        return
    clean = ints_only(replies)  # the usual batch: no error reply, no key gone
    if not clean and has_error(replies):
        replies = unmoved(replies, stats)
    if len(replies) >= 2 * n:  # PTTL k1, MEMORY USAGE k1, PTTL k2, ...
        ttls, mems = replies[0::2], replies[1::2]
    else:  # MEMORY USAGE refused: PTTL only
        ttls, mems = replies, [0] * n
    if not clean:
        if has_error(ttls):
            from closeup_ops.ops.keyspace.keys import _refusal

            raise _refusal(address, first_error(ttls))
        if has_error(mems):
            if stats.memory_refused is None:
                stats.memory_refused = f"{address} refused MEMORY USAGE: {first_error(mems)}"
            mems = [0] * n
    if -2 in ttls or (not clean and None in mems):  # keys gone since SCAN: left out
        kept = [i for i in range(n) if ttls[i] != -2 and mems[i] is not None]
        keys = [keys[i] for i in kept]
        ttls = [ttls[i] for i in kept]
        mems = [mems[i] for i in kept]
        if not keys:
            return
    names = _namespaces(keys, sep, depth)
    for ns, count in Counter(names).items():
        acc = groups.get(ns)
        if acc is None:
            acc = groups[ns] = _Acc()
        acc.keys += count
    for ns, count in Counter(compress(names, map((-1).__lt__, ttls))).items():
        groups[ns].with_ttl += count
    present = set(names)
    if len(present) <= 8:  # the usual batch: a few namespaces, summed in C
        for ns in present:
            groups[ns].bytes += sum(compress(mems, map(eq, names, repeat(ns))))
    else:
        sums: defaultdict[bytes | None, int] = defaultdict(int)
        for ns, mem in zip(names, mems, strict=False):
            sums[ns] += mem
        for ns, total in sums.items():
            groups[ns].bytes += total
    biggest = max(mems)
    _biggest(groups, keys, ttls, mems, names, present, biggest)
    if top:
        _top(overall, keys, ttls, mems, top, biggest)


def ints_only(replies: list[Any]) -> bool:
    """True when every reply is an integer (no error reply, no nil), in one C-level pass:
    sum() raises TypeError on anything else. 4x cheaper than has_error()."""
    try:
        sum(replies)
    except TypeError:
        return False
    return True


def _top(
    heap: list[tuple[int, bytes, int]],
    keys: list[bytes],
    ttls: list[int],
    mems: list[int],
    n: int,
    biggest: int,
) -> None:
    """Keep the n biggest keys seen so far (a min-heap): only keys above its smallest
    entry are looked at, so a full heap costs nothing more per batch (`biggest` is the
    batch's largest size)."""
    floor = heap[0][0] if len(heap) >= n else -1
    if biggest <= floor:  # the usual batch once the heap is full
        return
    for i in [i for i, m in enumerate(mems) if m > floor]:
        item = (mems[i], keys[i], ttls[i])
        if len(heap) < n:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)


def _namespaces(keys: list[bytes], sep: bytes, depth: int) -> list[bytes | None]:
    if depth == 1:
        # partition in C: (head, sep, tail); a key without the separator has no namespace
        parts = list(map(bytes.partition, keys, repeat(sep)))
        heads = list(map(itemgetter(0), parts))
        if b"" not in map(itemgetter(1), parts):
            return heads  # type: ignore[return-value]
        return [h if s else None for h, s, _ in parts]
    return [namespace_of(k, sep, depth) for k in keys]


def _biggest(
    groups: dict[bytes | None, _Acc],
    keys: list[bytes],
    ttls: list[int],
    mems: list[int],
    names: list[bytes | None],
    present: set[bytes | None],
    biggest: int,
    top: int = 1,
) -> None:
    """Offer each namespace (`present`: those of this batch) its biggest keys of the batch,
    largest first, until the namespace's heap stops taking them."""
    heaps = [groups[ns].top for ns in present]
    # Only keys bigger than the smallest entry of every full heap can get in.
    floor = min(h[0][0] for h in heaps) if all(len(h) >= top for h in heaps) else -1
    if biggest <= floor:
        return
    candidates = [i for i, m in enumerate(mems) if m > floor]
    done: set[bytes | None] = set()
    wanted = len(present)
    for i in sorted(candidates, key=mems.__getitem__, reverse=True):
        ns = names[i]
        if ns in done:
            continue
        heap = groups[ns].top
        item = (mems[i], keys[i], ttls[i])
        if len(heap) < top:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
        else:
            done.add(ns)
            if len(done) == wanted:
                break


def _build(
    target: RedisTarget,
    spec: ScanSpec,
    separator: str,
    depth: int,
    groups: dict[bytes | None, _Acc],
    overall: list[tuple[int, bytes, int]],
    stats: ScanStats,
) -> Summary:
    refused = stats.memory_refused is not None
    out = []
    merged: dict[bytes | None, _Acc] = {}
    for ns, acc in groups.items():
        merged[ns] = acc
    sep = separator.encode()
    for ns, acc in merged.items():
        name = NO_NAMESPACE if ns is None else key_text(ns)
        big = max(acc.top) if acc.top and not refused else None
        out.append(
            Namespace(
                namespace=name,
                pattern="*" if ns is None else f"{_glob_escape(name)}{separator}*",
                keys=acc.keys,
                total_bytes=None if refused else acc.bytes,
                avg_bytes=None if refused or not acc.keys else round(acc.bytes / acc.keys, 1),
                with_ttl=acc.with_ttl,
                without_ttl=acc.keys - acc.with_ttl,
                ttl_share=round(acc.with_ttl / acc.keys, 4) if acc.keys else 0.0,
                biggest=None if big is None else BigKey(key_text(big[1]), big[0], big[2]),
            )
        )
    biggest = []
    if not refused:
        for m, k, t in sorted(overall, reverse=True):
            ns = namespace_of(k, sep, depth)
            biggest.append(BigKey(key_text(k), m, t, NO_NAMESPACE if ns is None else key_text(ns)))
    out.sort(key=lambda ns: (-(ns.total_bytes or 0), -ns.keys, ns.namespace))
    total_keys = sum(ns.keys for ns in out)
    with_ttl = sum(ns.with_ttl for ns in out)
    return Summary(
        endpoint=target.endpoint,
        pattern=spec.pattern,
        type=spec.type,
        separator=separator,
        depth=depth,
        nodes=stats.nodes,
        keys=total_keys,
        total_bytes=None if refused else sum(ns.total_bytes or 0 for ns in out),
        with_ttl=with_ttl,
        without_ttl=total_keys - with_ttl,
        memory_refused=stats.memory_refused,
        namespaces=out,
        biggest=biggest,
        shards=stats.shards,
        parallel=stats.parallel,
        slot_map_changed=stats.slot_map_changed,
    )


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
