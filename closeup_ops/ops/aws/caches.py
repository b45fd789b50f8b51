"""`caches`: every serverless cache, replication group and cache cluster, summarised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.aws import list_caches
from closeup_ops.connect.cache_ref import CacheRef


@dataclass
class CacheSummary:
    name: str
    kind: str
    engine: str | None
    engine_version: str | None
    status: str | None
    endpoints: list[dict[str, Any]]
    ports: list[int]
    tls: bool | None
    cluster_mode: bool | None
    security_groups: list[str]
    node_type: str | None = None
    members: list[str] = field(default_factory=list)

    def main_endpoints(self) -> list[str]:
        """Endpoints an app connects to: not the per-node ones (unless that is all there is)."""
        shown = [e for e in self.endpoints if not str(e["role"]).startswith("node")]
        return [f"{e['address']}:{e['port']}" for e in (shown or self.endpoints)]


def summarize(cache: CacheRef) -> CacheSummary:
    return CacheSummary(
        name=cache.name,
        kind=cache.kind,
        engine=cache.engine,
        engine_version=cache.engine_version,
        status=cache.status,
        endpoints=cache.endpoints,
        ports=cache.ports,
        tls=cache.tls,
        cluster_mode=cache.cluster_mode,
        security_groups=cache.security_group_ids,
        node_type=cache.node_type,
        members=list(cache.raw.get("MemberClusters") or []),
    )


def caches(client: Any) -> list[CacheSummary]:
    return [summarize(c) for c in list_caches(client)]
