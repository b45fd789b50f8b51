"""What a node-based restore copies besides the cache's shape (restore.py): backups,
maintenance, network and in-transit encryption mode, each only where the source cache (or,
when it is gone, the snapshot) records it and the Create* call accepts it; and what it
cannot copy, said as warnings.

CreateReplicationGroup and CreateCacheCluster accept different sets (botocore's elasticache
service model, the two operations' input shapes): both take the six in BOTH; only
CreateReplicationGroup takes TransitEncryptionMode, ClusterMode and Durability."""

from __future__ import annotations

from typing import Any

from closeup_ops.connect.cache_ref import CACHE_CLUSTER, CacheRef
from closeup_ops.ops.aws.snapshots import SnapshotInfo

BOTH = (
    "SnapshotRetentionLimit",
    "SnapshotWindow",
    "PreferredMaintenanceWindow",
    "AutoMinorVersionUpgrade",
    "NetworkType",
    "IpDiscovery",
)
GROUP_ONLY = ("TransitEncryptionMode", "ClusterMode", "Durability")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _maintained(raw: dict[str, Any]) -> dict[str, Any]:
    """Where the maintenance window is: a replication group's description has none, its
    member clusters have it (DescribeCacheClusters)."""
    members = raw.get("_members") or []
    return members[0] if members else raw


def copied_settings(
    kind: str,
    snapshot: SnapshotInfo,
    source: CacheRef | None,
    tls_flag: bool | None,
    cluster_mode: bool,
) -> dict[str, Any]:
    """The settings for CreateReplicationGroup (kind replication-group) or CreateCacheCluster
    (kind cache-cluster); a key only when the source has a value for it."""
    raw = source.raw if source is not None else {}
    snap = snapshot.raw
    out = {
        # Create*'s default retention is 0 (automatic backups off). A snapshot records its
        # source's limit, window and maintenance window (service model: Snapshot), so
        # those survive the source being deleted.
        "SnapshotRetentionLimit": _first(
            raw.get("SnapshotRetentionLimit"), snap.get("SnapshotRetentionLimit")
        ),
        "SnapshotWindow": _first(raw.get("SnapshotWindow"), snap.get("SnapshotWindow")),
        "PreferredMaintenanceWindow": _first(
            _maintained(raw).get("PreferredMaintenanceWindow"),
            snap.get("PreferredMaintenanceWindow"),
        ),
        "AutoMinorVersionUpgrade": _first(
            raw.get("AutoMinorVersionUpgrade"), snap.get("AutoMinorVersionUpgrade")
        ),
        # ipv4 | ipv6 | dual_stack and how the nodes are found: only the source says (a
        # snapshot does not record them); the copy keeps the source's subnet group, which
        # is what allows IPv6
        "NetworkType": raw.get("NetworkType"),
        "IpDiscovery": raw.get("IpDiscovery"),
    }
    if kind != CACHE_CLUSTER:
        out.update(_group_only(raw, tls_flag, cluster_mode))
    return {k: v for k, v in out.items() if v is not None}


def _group_only(raw: dict[str, Any], tls_flag: bool | None, cluster_mode: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # CreateReplicationGroup documents TransitEncryptionMode "preferred" in the same request
    # as TransitEncryptionEnabled; "required" is reached in two steps through "preferred",
    # so it is not sent: TLS enabled at creation is the encrypted-only group. A --tls/--no-tls
    # flag chose the encryption itself, so the source's migration state is not copied then.
    if (
        tls_flag is None
        and raw.get("TransitEncryptionEnabled")
        and raw.get("TransitEncryptionMode") == "preferred"
    ):
        out["TransitEncryptionMode"] = "preferred"
    # enabled | disabled, as the topology asked for; "compatible" is a migration state of a
    # running group (ModifyReplicationGroup), said in a warning instead
    wanted = "enabled" if cluster_mode else "disabled"
    if raw.get("ClusterMode") == wanted:
        out["ClusterMode"] = wanted
    if raw.get("Durability") not in (None, "", "default"):  # "default": the service decides
        out["Durability"] = raw["Durability"]
    return out


def settings_warnings(
    kind: str, source: CacheRef, tls_flag: bool | None, cluster_mode: bool
) -> list[str]:
    """What the source has that the new cache will not, and why."""
    raw = source.raw
    out = []
    if (
        kind == CACHE_CLUSTER
        and tls_flag is None
        and raw.get("TransitEncryptionEnabled")
        and raw.get("TransitEncryptionMode") == "preferred"
    ):
        out.append(
            f"{source.name} also accepts unencrypted connections (in-transit encryption mode "
            "preferred); CreateCacheCluster has no TransitEncryptionMode, so clients of the "
            "new cache may need TLS"
        )
    if raw.get("ClusterMode") == "compatible":
        mode = "enabled" if cluster_mode else "disabled"
        out.append(
            f"{source.name} is migrating to cluster mode (ClusterMode compatible), which a new "
            f"cache cannot start in: the new one is cluster mode {mode}"
        )
    left = []
    if any((m.get("NotificationConfiguration") or {}).get("TopicArn") for m in _clusters(raw)):
        left.append("SNS notifications")
    if any(c.get("Status") != "disabling" for c in _logs(raw)):
        left.append("log delivery")
    if left:
        out.append(
            f"not copied from {source.name}: {' and '.join(left)} (the new cache would report "
            "to the source's topic and logs); set them on the new cache if it needs them"
        )
    return out


def _clusters(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return list(raw.get("_members") or []) or [raw]


def _logs(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return list(raw.get("LogDeliveryConfigurations") or [])
