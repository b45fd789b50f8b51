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

from collections import defaultdict
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


def _sample_keys(client: Any, budget: int) -> list[bytes]:
    seen: dict[bytes, None] = {}
    left = budget
    while left > 0:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, left)):
            pipe.execute_command("RANDOMKEY")
        got = pipe.execute()
        left -= len(got)
        if not any(got):  # an empty database
            break
        for k in got:
            if k is not None:
                seen[k if isinstance(k, bytes) else str(k).encode()] = None
    return list(seen)


def _scan_keys(client: Any) -> list[bytes]:
    return [k if isinstance(k, bytes) else str(k).encode() for k in client.scan_iter(count=1000)]


def _describe(client: Any, keys: list[bytes], lfu: bool) -> list[tuple[bytes, Any, Any, Any]]:
    """(key, memory, pttl, freq) per key; a refused command gives its exception."""
    out = []
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for k in chunk:
            pipe.execute_command("MEMORY", "USAGE", k)
            pipe.execute_command("PTTL", k)
            if lfu:
                pipe.execute_command("OBJECT", "FREQ", k)
        replies = pipe.execute(raise_on_error=False)
        step = 3 if lfu else 2
        for i, k in enumerate(chunk):
            row = replies[i * step : (i + 1) * step]
            out.append((k, row[0], row[1], row[2] if lfu else None))
    return out


def sample_keys(
    primaries: list[tuple[str, Any]],
    policies: dict[str, str | None],
    budget: int,
    full: bool = False,
    top: int = 10,
) -> KeySample:
    """`policies`: node -> maxmemory-policy from INFO (None when INFO did not say)."""
    rows: list[SampledKey] = []
    per_node: dict[str, int] = {}
    unavailable: list[tuple[str, str]] = []
    memory_note = None
    lfu_nodes: list[str] = []
    not_lfu: dict[str, str] = {}
    for address, client in primaries:
        policy = policies.get(address)
        lfu = policy is not None and "lfu" in policy
        try:
            keys = _scan_keys(client) if full else _sample_keys(client, budget)
            described = _describe(client, keys, lfu)
        except Exception as exc:  # noqa: BLE001 - reported per node
            unavailable.append((address, reason(exc)))
            continue
        if lfu:
            lfu_nodes.append(address)
        else:
            not_lfu[address] = policy or "unknown"
        per_node[address] = 0
        for key, mem, pttl, freq in described:
            if isinstance(pttl, Exception) or pttl == -2:
                continue  # refused, or gone since it was picked
            if isinstance(mem, Exception):
                memory_note = f"MEMORY USAGE refused: {mem}"
                mem = None
            if isinstance(freq, Exception):
                freq = None
            per_node[address] += 1
            rows.append(SampledKey(display(key), address, mem, int(pttl), freq))
    if not per_node:
        raise Unavailable("; ".join(f"{a}: {w}" for a, w in unavailable) or "no primaries")
    hot_note = None
    if not_lfu:
        policies_seen = sorted(set(not_lfu.values()))
        hot_note = (
            f"hot keys need an LFU eviction policy (maxmemory-policy is "
            f"{', '.join(policies_seen)}): OBJECT FREQ is not tracked; the slow log and "
            "the commands by time show where the load is"
        )
    biggest = sorted((r for r in rows if r.bytes), key=lambda r: -(r.bytes or 0))[:top]
    hottest = sorted((r for r in rows if r.freq), key=lambda r: -(r.freq or 0))[:top]
    return KeySample(
        mode="full" if full else "sample",
        sampled=len(rows),
        per_node=per_node,
        biggest=biggest,
        hottest=hottest,
        hot_note=hot_note,
        namespaces=namespaces(rows, top),
        memory_note=memory_note,
        unavailable=unavailable,
    )


def namespaces(rows: list[SampledKey], top: int = 10) -> list[NamespaceShare]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # keys, bytes, ttl bytes
    for r in rows:
        ns = namespace_of(r.key.encode(), b":", 1)
        name = NO_NAMESPACE if ns is None else ns.decode() + ":"
        a = acc[name]
        a[0] += 1
        a[1] += r.bytes or 0
        a[2] += (r.bytes or 0) if r.ttl_ms >= 0 else 0
    total = sum(a[1] for a in acc.values()) or 1
    out = [
        NamespaceShare(
            name, a[0], a[1], round(a[1] / total, 4), round(a[2] / a[1], 4) if a[1] else 0.0
        )
        for name, a in acc.items()
    ]
    out.sort(key=lambda n: (-n.bytes, -n.sampled_keys, n.namespace))
    return out[:top]
