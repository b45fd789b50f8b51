"""Hot and big keys by sampling: RANDOMKEY a budget of times on every primary (or, with
--full, SCAN all of it), then MEMORY USAGE, PTTL and (under an LFU policy) OBJECT FREQ of
each key. Gives the biggest keys, the hottest keys, and the namespaces that hold the
sampled memory with how much of it has a TTL.

RANDOMKEY samples keys uniformly, so a namespace's share of the sampled memory estimates
its share of the dataset; a hot key is only found when it is sampled (the slow log and
commandstats cover the rest; --full looks at every key). MEMORY USAGE uses the server's
default SAMPLES (5), as `redis-cli --memkeys` does. PTTL, MEMORY USAGE and OBJECT FREQ do
not touch a key's LRU/LFU clock, so sampling does not make keys look hot.
"""

from __future__ import annotations

import heapq
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.keyspace.encode import display
from closeup_ops.ops.keyspace.summary import NO_NAMESPACE, namespace_of
from closeup_ops.ops.triage.parts import Unavailable, reason

BATCH = 200


@dataclass
class SampledKey:
    key: str
    node: str
    bytes: int | None
    ttl_ms: int
    freq: int | None


@dataclass
class NamespaceShare:
    namespace: str
    sampled_keys: int
    bytes: int
    share: float  # of the sampled memory, 0..1
    ttl_share: float  # of this namespace's sampled memory held by keys with a TTL, 0..1


@dataclass
class KeySample:
    mode: str  # "sample" or "full"
    sampled: int
    per_node: dict[str, int]
    biggest: list[SampledKey]
    hottest: list[SampledKey]
    hot_note: str | None
    namespaces: list[NamespaceShare]
    memory_note: str | None = None
    unavailable: list[tuple[str, str]] = field(default_factory=list)


def _sampled(client: Any, budget: int) -> Iterator[list[bytes]]:
    """Batches of distinct keys from `budget` RANDOMKEY calls."""
    seen: set[bytes] = set()
    left = budget
    while left > 0:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, left)):
            pipe.execute_command("RANDOMKEY")
        got = pipe.execute()
        left -= len(got)
        if not any(got):  # an empty database
            return
        fresh = []
        for k in got:
            k = k if isinstance(k, bytes) or k is None else str(k).encode()
            if k is not None and k not in seen:
                seen.add(k)
                fresh.append(k)
        yield fresh


def _scanned(client: Any) -> Iterator[list[bytes]]:
    """Batches of every key (SCAN), for --full."""
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=1000)
        yield [k if isinstance(k, bytes) else str(k).encode() for k in keys]
        if int(cursor) == 0:
            return


def _describe(client: Any, keys: list[bytes], lfu: bool) -> list[tuple[bytes, Any, Any, Any]]:
    """(key, memory, pttl, freq) per key; a refused command gives its exception."""
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.execute_command("MEMORY", "USAGE", k)
        pipe.execute_command("PTTL", k)
        if lfu:
            pipe.execute_command("OBJECT", "FREQ", k)
    replies = pipe.execute(raise_on_error=False) if keys else []
    step = 3 if lfu else 2
    return [
        (k, replies[i * step], replies[i * step + 1], replies[i * step + 2] if lfu else None)
        for i, k in enumerate(keys)
    ]


class _Acc:
    """What the keys fold into: counts per namespace and the top keys, never every key."""

    def __init__(self, top: int):
        self.top = top
        self.count = 0
        self.seq = 0
        self.ns: dict[bytes | None, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.big: list[tuple[int, int, SampledKey]] = []
        self.hot: list[tuple[int, int, SampledKey]] = []
        self.memory_note: str | None = None

    def add(self, node: str, key: bytes, mem: Any, pttl: Any, freq: Any) -> bool:
        if isinstance(pttl, Exception) or pttl == -2:
            return False  # refused, or gone since it was picked
        if isinstance(mem, Exception):
            self.memory_note = f"MEMORY USAGE refused: {mem}"
            mem = None
        if isinstance(freq, Exception):
            freq = None
        self.count += 1
        a = self.ns[namespace_of(key, b":", 1)]
        a[0] += 1
        a[1] += mem or 0
        a[2] += (mem or 0) if int(pttl) >= 0 else 0
        for heap, score in ((self.big, mem), (self.hot, freq)):
            if score and (len(heap) < self.top or score > heap[0][0]):
                self.seq += 1
                item = (int(score), self.seq, SampledKey(display(key), node, mem, int(pttl), freq))
                (heapq.heappush if len(heap) < self.top else heapq.heapreplace)(heap, item)
        return True

    def namespaces(self) -> list[NamespaceShare]:
        total = sum(a[1] for a in self.ns.values()) or 1
        out = [
            NamespaceShare(
                NO_NAMESPACE if ns is None else display(ns) + ":",
                a[0],
                a[1],
                round(a[1] / total, 4),
                round(a[2] / a[1], 4) if a[1] else 0.0,
            )
            for ns, a in self.ns.items()
        ]
        out.sort(key=lambda n: (-n.bytes, -n.sampled_keys, n.namespace))
        return out[: self.top]


def sample_keys(
    primaries: list[tuple[str, Any]],
    policies: dict[str, str | None],
    budget: int,
    full: bool = False,
    top: int = 10,
) -> KeySample:
    """`policies`: node -> maxmemory-policy from INFO (None when INFO did not say)."""
    acc = _Acc(top)
    per_node: dict[str, int] = {}
    unavailable: list[tuple[str, str]] = []
    not_lfu: dict[str, str] = {}
    lock = threading.Lock()

    def one(node: tuple[str, Any]) -> tuple[int, Exception | None]:
        address, client = node
        lfu = "lfu" in (policies.get(address) or "")
        seen = 0
        try:
            for keys in _scanned(client) if full else _sampled(client, budget):
                rows = _describe(client, keys, lfu)
                with lock:
                    for key, mem, pttl, freq in rows:
                        seen += acc.add(address, key, mem, pttl, freq)
        except Exception as exc:  # noqa: BLE001 - reported per node
            return seen, exc
        return seen, None

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(primaries)))) as pool:
        results = list(pool.map(one, primaries))
    for (address, _), (seen, exc) in zip(primaries, results, strict=True):
        if exc is not None:
            unavailable.append((address, reason(exc)))
            if not seen:
                continue
        policy = policies.get(address)
        if "lfu" not in (policy or ""):
            not_lfu[address] = policy or "unknown"
        per_node[address] = seen
    if not per_node:
        raise Unavailable("; ".join(f"{a}: {w}" for a, w in unavailable) or "no primaries")
    hot_note = None
    if not_lfu:
        hot_note = (
            f"hot keys need an LFU eviction policy (maxmemory-policy is "
            f"{', '.join(sorted(set(not_lfu.values())))}): OBJECT FREQ is not tracked; the "
            "slow log and the commands by time show where the load is"
        )
    return KeySample(
        mode="full" if full else "sample",
        sampled=acc.count,
        per_node=per_node,
        biggest=[k for _, _, k in sorted(acc.big, reverse=True)],
        hottest=[k for _, _, k in sorted(acc.hot, reverse=True)],
        hot_note=hot_note,
        namespaces=acc.namespaces(),
        memory_note=acc.memory_note,
        unavailable=unavailable,
    )
