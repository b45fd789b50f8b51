"""Restore a snapshot: always to a NEW cache of the snapshot's kind (CreateServerlessCache
with SnapshotArnsToRestore; CreateReplicationGroup or CreateCacheCluster with SnapshotName),
copying the source cache's network, engine and access settings where it still exists
(backups, maintenance, network type: restore_settings.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.aws import describe_by_name
from closeup_ops.connect.cache_ref import CACHE_CLUSTER, REPLICATION_GROUP, SERVERLESS, CacheRef
from closeup_ops.errors import AwsResourceError, UsageError
from closeup_ops.ops.aws.restore_settings import copied_settings, settings_warnings
from closeup_ops.ops.aws.snapshots import SnapshotInfo, as_int, poll


@dataclass
class RestoreOptions:
    """Flags that override what is copied from the source cache (None: copy)."""

    node_type: str | None = None
    engine_version: str | None = None
    subnet_group: str | None = None
    subnet_ids: list[str] | None = None
    security_group_ids: list[str] | None = None
    tls: bool | None = None


@dataclass
class RestoreResult:
    target: str
    kind: str
    snapshot: str
    status: str | None
    copied_from: str | None  # the source cache whose settings were copied, if it still exists
    request: dict[str, Any]  # what was sent to AWS (no secrets in it)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _pick(flag: Any, *copies: Any) -> Any:
    if flag is not None:
        return flag
    return next((c for c in copies if c not in (None, [], "")), None)


def _drop_empty(req: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in req.items() if v is not None and v != [] and v != ""}


@dataclass
class NodeShape:
    """What a node-based cache was, from the source when it still exists, else from the
    snapshot's own fields (a snapshot records the shape, parameter group and port)."""

    engine: str | None
    engine_version: str | None
    node_type: str | None
    subnet_group: str | None
    parameter_group: str | None
    port: int | None
    cluster_mode: bool
    node_groups: int
    replicas: int  # per node group
    failover: bool
    multi_az: bool
    data_tiering: bool
    at_rest: bool | None  # None: not recorded (the source is gone and no KmsKeyId)
    kms_key: str | None


def _source_shape(snapshot: SnapshotInfo, src: CacheRef) -> NodeShape:
    raw = src.raw
    members = raw.get("_members") or ([raw] if src.kind == CACHE_CLUSTER else [])
    first = members[0] if members else {}
    groups = raw.get("NodeGroups") or []
    sizes = [len(g.get("NodeGroupMembers") or []) for g in groups]
    member_count = len(raw.get("MemberClusters") or []) or 1
    replicas = max(sizes) - 1 if sizes and max(sizes) else member_count // max(len(groups), 1) - 1
    endpoint = raw.get("ConfigurationEndpoint") or (groups[0] if groups else {}).get(
        "PrimaryEndpoint"
    )
    port = (endpoint or {}).get("Port") or next(
        (n["Endpoint"].get("Port") for n in first.get("CacheNodes") or [] if n.get("Endpoint")),
        None,
    )
    at_rest = raw.get("AtRestEncryptionEnabled")
    return NodeShape(
        # engine and version of the same cache: the source as it is now (it may have been
        # upgraded, even from redis to valkey, since the snapshot)
        engine=src.engine or snapshot.engine,
        engine_version=src.engine_version or (None if src.engine else snapshot.engine_version),
        node_type=src.node_type or snapshot.node_type,
        subnet_group=src.subnet_group or snapshot.raw.get("CacheSubnetGroupName"),
        parameter_group=(first.get("CacheParameterGroup") or {}).get("CacheParameterGroupName")
        or snapshot.raw.get("CacheParameterGroupName"),
        port=as_int(port) or as_int(snapshot.raw.get("Port")),
        cluster_mode=bool(src.cluster_mode),
        node_groups=len(groups) or 1,
        replicas=max(replicas, 0),
        failover=raw.get("AutomaticFailover") in ("enabled", "enabling"),
        multi_az=raw.get("MultiAZ") == "enabled",
        data_tiering=raw.get("DataTiering") == "enabled",
        at_rest=bool(at_rest) if at_rest is not None else None,
        kms_key=raw.get("KmsKeyId"),
    )


def _snapshot_shape(snapshot: SnapshotInfo) -> NodeShape:
    raw = snapshot.raw
    configs = [n.get("NodeGroupConfiguration") or {} for n in raw.get("NodeSnapshots") or []]
    counts = [as_int(c.get("ReplicaCount")) for c in configs]
    known = [c for c in counts if c is not None]
    node_groups = as_int(raw.get("NumNodeGroups")) or len(
        {n.get("NodeGroupId") for n in raw.get("NodeSnapshots") or [] if n.get("NodeGroupId")}
    )
    parameter_group = raw.get("CacheParameterGroupName")
    cluster_mode = (node_groups or 1) > 1 or str(parameter_group or "").endswith("cluster.on")
    kms = raw.get("KmsKeyId")
    return NodeShape(
        engine=snapshot.engine,
        engine_version=snapshot.engine_version,
        node_type=snapshot.node_type,
        subnet_group=raw.get("CacheSubnetGroupName"),
        parameter_group=parameter_group,
        port=as_int(raw.get("Port")),
        cluster_mode=cluster_mode,
        node_groups=node_groups or 1,
        replicas=max(known) if known else max((as_int(raw.get("NumCacheNodes")) or 1) - 1, 0),
        failover=raw.get("AutomaticFailover") in ("enabled", "enabling"),
        multi_az=False,  # a snapshot does not record Multi-AZ
        data_tiering=raw.get("DataTiering") == "enabled",
        at_rest=True if kms else None,
        kms_key=kms,
    )


def node_shape(snapshot: SnapshotInfo, source: CacheRef | None) -> NodeShape:
    return _source_shape(snapshot, source) if source is not None else _snapshot_shape(snapshot)


def restore_request(
    snapshot: SnapshotInfo, target: str, source: CacheRef | None, opts: RestoreOptions
) -> dict[str, Any]:
    """The Create* parameters for `target` from `snapshot`: flags > the source cache's
    settings (when it still exists) > what the snapshot itself records."""
    src = source
    groups = _pick(opts.security_group_ids, src.security_group_ids if src else None)
    description = f"restored from snapshot {snapshot.name} by closeup-ops"
    if snapshot.kind == SERVERLESS:
        return _serverless_request(snapshot, target, src, opts, groups, description)
    shape = node_shape(snapshot, src)
    common = _drop_empty(
        {
            "CacheNodeType": _pick(opts.node_type, shape.node_type),
            "Engine": shape.engine,
            "EngineVersion": _pick(opts.engine_version, shape.engine_version),
            "CacheParameterGroupName": shape.parameter_group,
            "CacheSubnetGroupName": _pick(opts.subnet_group, shape.subnet_group),
            "SecurityGroupIds": groups,
            "Port": shape.port,
            "TransitEncryptionEnabled": _pick(opts.tls, src.tls if src else None),
            "SnapshotName": snapshot.name,
        }
    )
    # backups, maintenance, network type, TLS mode: what the source has and Create* takes
    common.update(copied_settings(snapshot.kind, snapshot, src, opts.tls, shape.cluster_mode))
    if snapshot.kind == CACHE_CLUSTER:
        return {"CacheClusterId": target, "NumCacheNodes": 1, **common}
    req: dict[str, Any] = {
        "ReplicationGroupId": target,
        "ReplicationGroupDescription": description,
        **common,
    }
    if shape.cluster_mode:
        req["NumNodeGroups"] = shape.node_groups
        req["ReplicasPerNodeGroup"] = shape.replicas
        req["AutomaticFailoverEnabled"] = True  # required with cluster mode
    else:
        req["NumCacheClusters"] = shape.replicas + 1
        if shape.failover and shape.replicas:
            req["AutomaticFailoverEnabled"] = True
    if shape.multi_az and shape.replicas:  # Multi-AZ needs a replica to fail over to
        req["MultiAZEnabled"] = True
    if shape.data_tiering:  # required for r6gd nodes
        req["DataTieringEnabled"] = True
    if shape.at_rest is not None:
        req["AtRestEncryptionEnabled"] = shape.at_rest
    if shape.at_rest and shape.kms_key:
        req["KmsKeyId"] = shape.kms_key
    if src is not None and src.raw.get("UserGroupIds"):
        req["UserGroupIds"] = list(src.raw["UserGroupIds"])
    return req


def _serverless_request(
    snapshot: SnapshotInfo,
    target: str,
    src: CacheRef | None,
    opts: RestoreOptions,
    groups: list[str] | None,
    description: str,
) -> dict[str, Any]:
    raw = src.raw if src is not None else {}
    if src is not None and src.engine:  # engine and version of the same cache
        engine, major = src.engine, raw.get("MajorEngineVersion")
    else:
        engine, major = snapshot.engine, snapshot.engine_version
    req: dict[str, Any] = {
        "ServerlessCacheName": target,
        "Description": description,
        "Engine": engine or "redis",
        "SnapshotArnsToRestore": [snapshot.arn],
    }
    extra = {
        "MajorEngineVersion": _pick(opts.engine_version, major),
        "SubnetIds": _pick(opts.subnet_ids, src.subnet_ids if src else None),
        "SecurityGroupIds": groups,
        # the same RBAC users, so the copy is not open to anyone who can reach it
        "UserGroupId": raw.get("UserGroupId"),
        "CacheUsageLimits": raw.get("CacheUsageLimits"),
        "KmsKeyId": raw.get("KmsKeyId") or snapshot.raw.get("KmsKeyId"),
        "SnapshotRetentionLimit": raw.get("SnapshotRetentionLimit"),
        "DailySnapshotTime": raw.get("DailySnapshotTime"),
    }
    return {**req, **_drop_empty(extra)}


def restore_warnings(
    snapshot: SnapshotInfo, source: CacheRef | None, opts: RestoreOptions | None = None
) -> list[str]:
    """What a restore cannot copy and the operator must redo, said once."""
    if source is not None:
        out = []
        if source.raw.get("AuthTokenEnabled"):
            out.append(
                f"{source.name} uses an AUTH token, which AWS never returns: the new cache "
                "has none until you set one (modify-replication-group --auth-token ...)"
            )
        if snapshot.kind != SERVERLESS:
            tls = (opts or RestoreOptions()).tls
            cluster_mode = node_shape(snapshot, source).cluster_mode
            out += settings_warnings(snapshot.kind, source, tls, cluster_mode)
        return out
    if snapshot.kind == SERVERLESS:
        missing = ["subnets", "security groups", "user group (RBAC)", "usage limits"]
        missing.append("snapshot retention")
    else:
        missing = ["security groups", "user groups (RBAC)", "in-transit encryption"]
        missing += ["AUTH token", "Multi-AZ", "network type (IPv4, IPv6, dual-stack)"]
        if not snapshot.raw.get("KmsKeyId"):
            missing.append("at-rest encryption (AWS's default applies)")
    return [
        f"the source cache {snapshot.cache or '?'} is gone; the snapshot does not record its "
        f"{', '.join(missing)}: pass them as flags or set them on the new cache"
    ]


def check_target_free(client: Any, target: str) -> None:
    """Refuse (exit 5) a target name that is already a cache of any kind."""
    existing = describe_by_name(client, target)
    if existing is not None:
        raise AwsResourceError(
            f"a {existing.kind} called {target!r} already exists",
            "a restore never touches an existing cache: pick a new --target name",
        )


def restore_snapshot(
    client: Any,
    snapshot: SnapshotInfo,
    target: str,
    opts: RestoreOptions | None = None,
    check_target: bool = True,
) -> RestoreResult:
    """Create `target` from `snapshot`. The target name is checked first (skip only when
    the caller has just called check_target_free)."""
    opts = opts or RestoreOptions()
    if not target or target == snapshot.cache:
        raise UsageError(
            f"--target {target!r} is the snapshot's own cache", "restore to a NEW cache name"
        )
    if check_target:
        check_target_free(client, target)
    source = describe_by_name(client, snapshot.cache) if snapshot.cache else None
    request = restore_request(snapshot, target, source, opts)
    if snapshot.kind == SERVERLESS:
        made = client.create_serverless_cache(**request)["ServerlessCache"]
        status, kind = made.get("Status"), SERVERLESS
    elif snapshot.kind == CACHE_CLUSTER:
        made = client.create_cache_cluster(**request)["CacheCluster"]
        status, kind = made.get("CacheClusterStatus"), CACHE_CLUSTER
    else:
        made = client.create_replication_group(**request)["ReplicationGroup"]
        status, kind = made.get("Status"), REPLICATION_GROUP
    return RestoreResult(
        target=target,
        kind=kind,
        snapshot=snapshot.name,
        status=status,
        copied_from=source.name if source else None,
        request=request,
        warnings=restore_warnings(snapshot, source, opts),
    )


# Terminal states that are not "available" (service model docs): a replication group or
# serverless cache "create-failed"; a cache cluster "restore-failed" (its data could not be
# loaded) or "incompatible-network" (its subnet/ENI set-up failed); "deleting"/"deleted" (it
# is going away). A replication group stays "creating" while a member cluster has already
# failed, so the members' states count too.
CACHE_FAILED = {
    "create-failed",
    "failed",
    "incompatible-restore",
    "restore-failed",
    "incompatible-network",
    "deleting",
    "deleted",
}
GONE = "gone"


def cache_status(cache: CacheRef) -> str:
    """The cache's status, or a member cluster's failed one (lower-case: serverless caches
    report upper-case in some regions and docs)."""
    status = (cache.status or "?").lower()
    for member in cache.raw.get("_members") or []:
        member_status = str(member.get("CacheClusterStatus", "")).lower()
        if member_status in CACHE_FAILED:
            return f"{member_status} (member {member.get('CacheClusterId')})"
    return status


def wait_cache(
    client: Any,
    name: str,
    timeout: float,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CacheRef:
    """Wait until the new cache is available (backoff from 5 s). A failed state, or the cache
    vanishing (after it was seen, or on two polls in a row), exits 5 at once; too slow: 5."""
    seen, misses = [False], [0]

    def fetch() -> tuple[str, CacheRef | None]:
        cache = describe_by_name(client, name)
        if cache is None:
            misses[0] += 1
            return (GONE if seen[0] or misses[0] >= 2 else "creating"), None
        seen[0], misses[0] = True, 0
        return cache_status(cache), cache

    def failed(status: str) -> bool:
        return status == GONE or status.split(" ")[0] in CACHE_FAILED

    hint = "it carries on in AWS; check with `closeup-ops caches`"
    return poll(fetch, f"restoring {name!r}", timeout, 5.0, failed, hint, update, sleep, clock)
