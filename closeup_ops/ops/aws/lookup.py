"""The cache as `doctor` and `stats` need it: status, port, security groups, backup
retention and the CloudWatch dimensions of its metrics.

Finding it is `closeup_ops.connect.aws.find_cache` (by --cache / ELASTICACHE_CACHE, else by
matching REDIS_HOST or REDIS_TLS_SERVER_NAME against every endpoint), the same lookup the
AWS commands use; this module only reads the facts off the description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.aws import find_cache
from closeup_ops.connect.cache_ref import CACHE_CLUSTER, REPLICATION_GROUP, SERVERLESS, CacheRef
from closeup_ops.settings import Settings

__all__ = ["CACHE_CLUSTER", "REPLICATION_GROUP", "SERVERLESS", "CacheFacts", "facts", "lookup"]


@dataclass
class CacheFacts:
    name: str
    kind: str
    status: str
    engine: str | None = None
    port: int | None = None
    # None: AWS did not say (a replication group whose member clusters it did not describe)
    security_group_ids: list[str] | None = None
    snapshot_retention: int | None = None
    snapshot_window: str | None = None
    member_clusters: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # every port it listens on

    def metric_dimensions(self) -> list[tuple[str, str]]:
        """(name, value) pairs that CloudWatch puts on this cache's AWS/ElastiCache metrics."""
        if self.kind == SERVERLESS:
            return [("clusterId", self.name)]
        if self.kind == REPLICATION_GROUP:
            return [("ReplicationGroupId", self.name)] + [
                ("CacheClusterId", m) for m in self.member_clusters
            ]
        return [("CacheClusterId", self.name)]


def facts(ref: CacheRef, port: int | None = None) -> CacheFacts:
    """The facts of a found cache; `port` (the one we dial) is kept when the cache has it."""
    raw = ref.raw
    groups: list[str] | None = list(ref.security_group_ids)
    if ref.kind == REPLICATION_GROUP and not raw.get("_members"):
        groups = None  # the group's own description carries none; its members were unread
    if ref.kind == CACHE_CLUSTER and "SecurityGroups" not in raw:
        groups = None
    return CacheFacts(
        name=ref.name,
        kind=ref.kind,
        status=ref.status or "?",
        engine=ref.engine,
        port=port if port in ref.ports else (ref.ports[0] if ref.ports else None),
        security_group_ids=groups,
        snapshot_retention=raw.get("SnapshotRetentionLimit"),
        snapshot_window=raw.get("SnapshotWindow") or raw.get("DailySnapshotTime"),
        member_clusters=list(raw.get("MemberClusters") or []),
        addresses=sorted(ref.addresses()),
        ports=list(ref.ports),
    )


def lookup(ec: Any, settings: Settings) -> CacheFacts:
    """Find the cache with the ElastiCache client `ec`; AwsResourceError when there is none."""
    return facts(find_cache(settings, client=ec), settings.port)
