"""`stats`: the INFO summary of every primary (summed in cluster mode), and the judgement of
INFO or CloudWatch numbers against the guide's thresholds (CPU < 70%, evictions ~ 0, hit
rate > 90%).

CloudWatch, when the cache is known, is the judge of evictions and hit rate (it covers the
--since window); without it INFO's counters are judged, and they count since the server
started, which the evidence says.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.errors import UsageError
from closeup_ops.ops.engine import engine_of
from closeup_ops.ops.thresholds import Judgement, Thresholds, hit_rate_judgement


@dataclass
class NodeStats:
    address: str
    role: str
    used_memory: int
    maxmemory: int
    evicted_keys: int
    keyspace_hits: int
    keyspace_misses: int
    connected_clients: int
    ops_per_sec: int
    keys: int
    replicas: int = 0
    # the worst replica of this primary: seconds since its last ack, bytes behind
    repl_lag_s: int | None = None
    repl_lag_bytes: int | None = None
    master_link_status: str | None = None  # when this node is a replica
    engine: str = ""  # "valkey 8.0.2" / "redis 7.0.15" (ops/engine.py)


@dataclass
class InfoSummary:
    role: str
    nodes: list[NodeStats]
    used_memory: int
    maxmemory: int
    evicted_keys: int
    keyspace_hits: int
    keyspace_misses: int
    hit_rate: float | None  # percent, since the servers started
    connected_clients: int
    ops_per_sec: int
    keys: int
    repl_lag_s: int | None
    repl_lag_bytes: int | None
    taken_at: float = field(default_factory=time.time)
    engine: str = ""  # the primaries' engine(s): "valkey 8.0.2" (two during an upgrade)


def parse_since(text: str) -> int:
    """'90s', '30m', '1h', '2d' -> seconds (1 minute to 63 days, CloudWatch's 5-minute span)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise UsageError(f"--since {text} is not valid", "use a duration such as 30m, 1h or 2d")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not 60 <= seconds <= 63 * 86400:
        raise UsageError(f"--since {text} is out of range", "use 1m to 63d")
    return int(seconds)


def _int(info: dict[str, Any], key: str) -> int:
    try:
        return int(info.get(key, 0) or 0)
    except (TypeError, ValueError):
        return 0


def node_stats(address: str, client: Any) -> NodeStats:
    info = client.info()
    keys = sum(
        _int(v, "keys")
        for k, v in info.items()
        if re.fullmatch(r"db\d+", str(k)) and isinstance(v, dict)
    )
    node = NodeStats(
        address=address,
        role=str(info.get("role", "?")),
        used_memory=_int(info, "used_memory"),
        maxmemory=_int(info, "maxmemory"),
        evicted_keys=_int(info, "evicted_keys"),
        keyspace_hits=_int(info, "keyspace_hits"),
        keyspace_misses=_int(info, "keyspace_misses"),
        connected_clients=_int(info, "connected_clients"),
        ops_per_sec=_int(info, "instantaneous_ops_per_sec"),
        keys=keys,
        engine=str(engine_of(info)),
    )
    if node.role == "master":
        offset = _int(info, "master_repl_offset")
        replicas = [
            v for k, v in info.items() if re.fullmatch(r"slave\d+", str(k)) and isinstance(v, dict)
        ]
        node.replicas = len(replicas)
        if replicas:
            node.repl_lag_s = max(_int(r, "lag") for r in replicas)
            node.repl_lag_bytes = max(max(0, offset - _int(r, "offset")) for r in replicas)
    else:
        node.master_link_status = info.get("master_link_status")
        node.repl_lag_s = _int(info, "master_last_io_seconds_ago")
    return node


def _max(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def summarize(nodes: list[NodeStats], cluster: bool) -> InfoSummary:
    hits = sum(n.keyspace_hits for n in nodes)
    misses = sum(n.keyspace_misses for n in nodes)
    role = f"cluster ({len(nodes)} primaries)" if cluster else nodes[0].role
    return InfoSummary(
        role=role,
        nodes=nodes,
        used_memory=sum(n.used_memory for n in nodes),
        maxmemory=sum(n.maxmemory for n in nodes),
        evicted_keys=sum(n.evicted_keys for n in nodes),
        keyspace_hits=hits,
        keyspace_misses=misses,
        hit_rate=round(100 * hits / (hits + misses), 2) if hits + misses else None,
        connected_clients=sum(n.connected_clients for n in nodes),
        ops_per_sec=sum(n.ops_per_sec for n in nodes),
        keys=sum(n.keys for n in nodes),
        repl_lag_s=_max([n.repl_lag_s for n in nodes]),
        repl_lag_bytes=_max([n.repl_lag_bytes for n in nodes]),
        engine=", ".join(sorted({n.engine for n in nodes if n.engine})),
    )


def collect_info(target: Any) -> InfoSummary:
    """INFO from every primary (one node in standalone mode), summed."""
    nodes = [node_stats(address, client) for address, client in target.primaries()]
    return summarize(nodes, target.cluster)


def judge_info(info: InfoSummary, limits: Thresholds) -> list[Judgement]:
    """Evictions and hit rate since the servers started (used when CloudWatch is not)."""
    out = [
        Judgement(
            "evictions",
            "info",
            info.evicted_keys,
            limits.max_evictions,
            info.evicted_keys > limits.max_evictions,
            f"{info.evicted_keys} keys evicted since the server started "
            f"(limit {limits.max_evictions})",
        )
    ]
    out.append(
        hit_rate_judgement(
            "info", info.keyspace_hits, info.keyspace_misses, limits, "since the server started"
        )
    )
    return out


def delta(before: InfoSummary, after: InfoSummary) -> dict[str, Any]:
    """One refresh of --watch: counters as differences over the interval."""
    # max(0, ...): a restarted server starts its counters again
    hits = max(0, after.keyspace_hits - before.keyspace_hits)
    misses = max(0, after.keyspace_misses - before.keyspace_misses)
    return {
        "time": time.strftime("%H:%M:%S", time.localtime(after.taken_at)),
        "keys": after.keys,
        "used_memory": after.used_memory,
        "maxmemory": after.maxmemory,
        "clients": after.connected_clients,
        "ops_per_sec": after.ops_per_sec,
        "hits": hits,
        "misses": misses,
        "hit_rate": round(100 * hits / (hits + misses), 2) if hits + misses > 0 else None,
        "evicted": max(0, after.evicted_keys - before.evicted_keys),
        "repl_lag_s": after.repl_lag_s,
    }


def judge_delta(row: dict[str, Any], limits: Thresholds) -> list[str]:
    """What a --watch refresh breached (evictions in the interval, its hit rate)."""
    out = []
    if row["evicted"] > limits.max_evictions:
        out.append("evictions")
    lookups = row["hits"] + row["misses"]
    if lookups >= limits.min_lookups and row["hit_rate"] < limits.min_hit_rate:
        out.append("hit-rate")
    return out


@dataclass
class StatsReport:
    endpoint: str
    info: InfoSummary | None
    cloudwatch: Any  # cloudwatch.CloudWatchSummary | None
    cloudwatch_note: str | None
    judgements: list[Judgement]
    breached: bool


def build_report(
    endpoint: str, info: InfoSummary | None, cw: Any, note: str | None, limits: Thresholds
) -> StatsReport:
    """CloudWatch judges what it measured over the window; INFO fills in the rest."""
    judgements: list[Judgement] = []
    if cw is not None:
        from closeup_ops.ops.aws.cloudwatch import judge

        judgements = judge(cw, limits)
    if info is not None:
        covered = {j.name for j in judgements}
        judgements += [j for j in judge_info(info, limits) if j.name not in covered]
    return StatsReport(endpoint, info, cw, note, judgements, any(j.breached for j in judgements))
