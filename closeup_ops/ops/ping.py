"""PING every primary and measure latency."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from closeup_ops.connect.redis import RedisTarget
from closeup_ops.ops.engine import engine_of


@dataclass
class NodePing:
    address: str
    role: str
    engine: str  # "valkey" or "redis" (INFO server_name)
    version: str  # the engine's own version (valkey_version, else redis_version)
    replicas: int
    latencies_ms: list[float] = field(repr=False)
    min_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


@dataclass
class PingReport:
    endpoint: str
    reply: str
    cluster: bool
    tls: bool
    count: int
    nodes: list[NodePing]


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.4999)))
    return sorted_values[rank - 1]


def ping_node(address: str, client, count: int, interval: float) -> NodePing:
    latencies = []
    for i in range(count):
        if i and interval:
            time.sleep(interval)
        start = time.perf_counter()
        client.ping()
        latencies.append((time.perf_counter() - start) * 1000)
    info = client.info("server") | client.info("replication")
    ordered = sorted(latencies)
    engine = engine_of(info)
    return NodePing(
        address=address,
        role=str(info.get("role", "?")),
        engine=engine.name,
        version=engine.version,
        replicas=int(info.get("connected_slaves", 0)),
        latencies_ms=[round(v, 3) for v in latencies],
        min_ms=round(ordered[0], 3),
        p50_ms=round(percentile(ordered, 50), 3),
        p99_ms=round(percentile(ordered, 99), 3),
        max_ms=round(ordered[-1], 3),
    )


def ping(target: RedisTarget, count: int = 1, interval: float = 0.0) -> PingReport:
    nodes = [ping_node(addr, client, count, interval) for addr, client in target.primaries()]
    return PingReport(
        endpoint=target.endpoint,
        reply="PONG",
        cluster=target.cluster,
        tls=target.tls,
        count=count,
        nodes=nodes,
    )
