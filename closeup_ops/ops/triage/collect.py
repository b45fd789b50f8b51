"""Per node: two INFO reads `interval` seconds apart, turned into rates (ops/s, evictions/s,
rejected connections/s, hit rate, server CPU) beside the gauges of the second read (memory,
fragmentation, clients, replication). INFO commandstats, when the engine allows it, gives
the commands that took the server's time in between.

INFO is asked for by section when a bare INFO is refused (an ACL or a managed engine that
only lets some sections through); what is refused is said, not guessed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.stats import node_stats
from closeup_ops.ops.triage.parts import Unavailable, each_node, reason

SECTIONS = ("server", "clients", "memory", "stats", "replication", "cpu", "keyspace", "errorstats")


@dataclass
class ReplicaLink:
    address: str
    state: str  # online, wait_bgsave, send_bulk, ...
    lag_s: int
    behind_bytes: int


@dataclass
class CommandTime:
    command: str
    calls_per_s: float
    usec_per_call: float
    share: float  # of the server time spent in commands over the interval, 0..1


@dataclass
class NodeReport:
    address: str
    role: str  # master / slave
    interval_s: float
    used_memory: int
    maxmemory: int
    maxmemory_policy: str | None
    used_memory_rss: int
    fragmentation: float | None
    keys: int
    expires: int
    connected_clients: int
    blocked_clients: int
    maxclients: int | None
    ops_per_s: float
    evicted_keys: int
    evictions_per_s: float
    rejected_connections: int
    rejected_per_s: float
    oom_errors_per_s: float
    hits_per_s: float
    misses_per_s: float
    hit_rate: float | None  # percent over the interval; None with too few lookups
    cpu_percent: float | None  # server CPU (sys + user) over the interval
    master_link_status: str | None = None  # a replica's link to its primary
    master_last_io_s: int | None = None
    replicas: list[ReplicaLink] = field(default_factory=list)
    commands: list[CommandTime] | None = None
    commands_note: str | None = None

    @property
    def memory_share(self) -> float | None:
        return self.used_memory / self.maxmemory if self.maxmemory else None


class _Shim:
    """Hands one INFO dict to ops.stats.node_stats as if it were a client."""

    def __init__(self, info: dict[str, Any]):
        self._info = info

    def info(self) -> dict[str, Any]:
        return self._info


def read_info(client: Any) -> dict[str, Any]:
    """INFO (default sections), or section by section when a bare INFO is refused."""
    import redis

    try:
        return client.info()
    except redis.exceptions.ResponseError as first:
        merged: dict[str, Any] = {}
        for section in SECTIONS:
            try:
                merged.update(client.info(section))
            except redis.exceptions.ResponseError:
                continue
        if not merged:
            raise Unavailable(f"INFO refused: {first}") from None
        return merged


def _commandstats(client: Any) -> tuple[dict[str, Any] | None, str | None]:
    import redis

    try:
        return client.info("commandstats"), None
    except redis.exceptions.ResponseError as exc:
        return None, f"INFO commandstats unavailable: {reason(exc)}"


def _num(info: dict[str, Any], key: str, default: float = 0) -> float:
    try:
        return float(info.get(key, default) or 0)
    except (TypeError, ValueError):
        return default


def _read(client: Any) -> tuple[float, dict[str, Any], dict[str, Any] | None, str | None]:
    when = time.monotonic()
    info = read_info(client)
    stats, note = _commandstats(client)
    return when, info, stats, note


def node_report(address: str, first: tuple, second: tuple, min_lookups: int = 100) -> NodeReport:
    """One node's report from two reads (monotonic time, INFO, commandstats, note)."""
    t1, a, cs1, _ = first
    t2, b, cs2, note = second
    dt = max(t2 - t1, 1e-6)

    def rate(key: str) -> float:
        # max(0, ...): a restarted server starts its counters again
        return round(max(0.0, _num(b, key) - _num(a, key)) / dt, 2)

    base = node_stats(address, _Shim(b))
    hits, misses = rate("keyspace_hits"), rate("keyspace_misses")
    lookups = (hits + misses) * dt
    cpu = None
    if "used_cpu_sys" in b and "used_cpu_sys" in a:
        used = sum(_num(b, k) - _num(a, k) for k in ("used_cpu_sys", "used_cpu_user"))
        cpu = round(100 * max(0.0, used) / dt, 1)
    expires = sum(
        int(v.get("expires", 0))
        for k, v in b.items()
        if re.fullmatch(r"db\d+", str(k)) and isinstance(v, dict)
    )
    report = NodeReport(
        address=address,
        role=base.role,
        interval_s=round(dt, 3),
        used_memory=base.used_memory,
        maxmemory=base.maxmemory,
        maxmemory_policy=b.get("maxmemory_policy"),
        used_memory_rss=int(_num(b, "used_memory_rss")),
        fragmentation=_num(b, "mem_fragmentation_ratio") or None,
        keys=base.keys,
        expires=expires,
        connected_clients=base.connected_clients,
        blocked_clients=int(_num(b, "blocked_clients")),
        maxclients=int(_num(b, "maxclients")) or None,
        ops_per_s=rate("total_commands_processed"),
        evicted_keys=base.evicted_keys,
        evictions_per_s=rate("evicted_keys"),
        rejected_connections=int(_num(b, "rejected_connections")),
        rejected_per_s=rate("rejected_connections"),
        oom_errors_per_s=0.0,
        hits_per_s=hits,
        misses_per_s=misses,
        hit_rate=round(100 * hits / (hits + misses), 2) if lookups >= min_lookups else None,
        cpu_percent=cpu,
        master_link_status=base.master_link_status,
        master_last_io_s=base.repl_lag_s if base.role != "master" else None,
        replicas=_replicas(b),
        commands_note=note,
    )
    errs_a, errs_b = a.get("errorstat_OOM"), b.get("errorstat_OOM")
    if isinstance(errs_b, dict):
        before = int(errs_a.get("count", 0)) if isinstance(errs_a, dict) else 0
        report.oom_errors_per_s = round(max(0, int(errs_b.get("count", 0)) - before) / dt, 2)
    if cs1 is not None and cs2 is not None:
        report.commands = command_times(cs1, cs2, dt)
    return report


def _replicas(info: dict[str, Any]) -> list[ReplicaLink]:
    if info.get("role") != "master":
        return []
    offset = int(_num(info, "master_repl_offset"))
    out = []
    for k, v in info.items():
        if re.fullmatch(r"slave\d+", str(k)) and isinstance(v, dict):
            out.append(
                ReplicaLink(
                    address=f"{v.get('ip')}:{v.get('port')}",
                    state=str(v.get("state", "?")),
                    lag_s=int(v.get("lag", 0) or 0),
                    behind_bytes=max(0, offset - int(v.get("offset", 0) or 0)),
                )
            )
    return out


def command_times(before: dict, after: dict, dt: float, top: int = 8) -> list[CommandTime]:
    """The commands that took the server's time between two INFO commandstats reads."""
    rows = []
    for name, stat in after.items():
        if not isinstance(stat, dict):
            continue
        old = before.get(name) if isinstance(before.get(name), dict) else {}
        calls = max(0, int(stat.get("calls", 0)) - int(old.get("calls", 0)))
        usec = max(0, int(stat.get("usec", 0)) - int(old.get("usec", 0)))
        if calls:
            rows.append((name.removeprefix("cmdstat_"), calls, usec))
    total = sum(u for _, _, u in rows) or 1
    rows.sort(key=lambda r: (-r[2], -r[1], r[0]))
    return [
        CommandTime(name, round(calls / dt, 2), round(usec / calls, 2), round(usec / total, 4))
        for name, calls, usec in rows[:top]
    ]


def all_nodes(target: Any, name: str | None = None) -> list[tuple[str, Any]]:
    """(address, client) of every node: primaries and replicas in cluster mode. `name`
    names a standalone node (the endpoint asked for, not a tunnel's local end)."""
    if not target.cluster:
        return [(name or target.endpoint, target.client)]
    out = []
    for node in target.client.get_nodes():
        if node.redis_connection is not None:
            out.append((f"{node.host}:{node.port}", node.redis_connection))
    return sorted(out)


def collect_nodes(
    nodes: list[tuple[str, Any]], interval: float, sleep: Any = time.sleep
) -> tuple[list[NodeReport], list[tuple[str, str]]]:
    """Every node read twice, `interval` apart, all nodes at once.
    Returns (reports, [(address, why unavailable)])."""
    firsts = [r for _, r in each_node(nodes, _read)]
    sleep(interval)
    seconds = [r for _, r in each_node(nodes, _read)]
    reports, missing = [], []
    for (address, _), first, second in zip(nodes, firsts, seconds, strict=True):
        if isinstance(first, BaseException) or isinstance(second, BaseException):
            exc = first if isinstance(first, BaseException) else second
            missing.append((address, reason(exc)))
            continue
        reports.append(node_report(address, first, second))
    if not reports:
        raise Unavailable("; ".join(f"{a}: {w}" for a, w in missing) or "no nodes")
    return reports, missing


@dataclass
class Shard:
    primary: str
    used_memory: int
    keys: int
    ops_per_s: float


@dataclass
class ShardBalance:
    shards: list[Shard]
    # the largest shard against the median shard; None when the median is 0
    memory_ratio: float | None
    keys_ratio: float | None
    ops_ratio: float | None


def shard_balance(nodes: list[NodeReport]) -> ShardBalance | None:
    """Memory, keys and ops per shard (its primary) and the largest against the median."""
    import statistics

    primaries = [n for n in nodes if n.role == "master"]
    if len(primaries) < 2:
        return None

    def ratio(values: list[float]) -> float | None:
        median = statistics.median(values)
        return round(max(values) / median, 2) if median > 0 else None

    return ShardBalance(
        shards=[Shard(n.address, n.used_memory, n.keys, n.ops_per_s) for n in primaries],
        memory_ratio=ratio([n.used_memory for n in primaries]),
        keys_ratio=ratio([n.keys for n in primaries]),
        ops_ratio=ratio([n.ops_per_s for n in primaries]),
    )
