"""Restore a snapshot: always to a NEW cache of the snapshot's kind (CreateServerlessCache
with SnapshotArnsToRestore; CreateReplicationGroup or CreateCacheCluster with SnapshotName),
copying the source cache's network, engine and access settings where it still exists."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.aws import (
    CACHE_CLUSTER,
    REPLICATION_GROUP,
    SERVERLESS,
    CacheRef,
    describe_by_name,
)
from closeup_ops.errors import AwsResourceError, UsageError
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


def restore_request(
    snapshot: SnapshotInfo, target: str, source: CacheRef | None, opts: RestoreOptions
) -> dict[str, Any]:
    """The Create* parameters for `target` from `snapshot`: flags > the source cache's
    settings > what the snapshot itself records."""
    raw, src = snapshot.raw, source
    groups = _pick(opts.security_group_ids, src.security_group_ids if src else None)
    description = f"restored from snapshot {snapshot.name} by closeup-ops"
    if snapshot.kind == SERVERLESS:
        req: dict[str, Any] = {
            "ServerlessCacheName": target,
            "Description": description,
            "Engine": _pick(None, snapshot.engine, src.engine if src else None) or "redis",
            "SnapshotArnsToRestore": [snapshot.arn],
        }
        major = _pick(
            opts.engine_version,
            snapshot.engine_version,
            src.raw.get("MajorEngineVersion") if src else None,
        )
        subnets = _pick(opts.subnet_ids, src.subnet_ids if src else None)
        extra = {
            "MajorEngineVersion": major,
            "SubnetIds": subnets,
            "SecurityGroupIds": groups,
            # the same RBAC users, so the copy is not open to anyone who can reach it
            "UserGroupId": src.raw.get("UserGroupId") if src else None,
        }
        return {**req, **{k: v for k, v in extra.items() if v}}
    common = {
        "CacheNodeType": _pick(opts.node_type, src.node_type if src else None, snapshot.node_type),
        "Engine": _pick(None, snapshot.engine, src.engine if src else None),
        "EngineVersion": _pick(
            opts.engine_version, src.engine_version if src else None, snapshot.engine_version
        ),
        "CacheSubnetGroupName": _pick(
            opts.subnet_group, src.subnet_group if src else None, raw.get("CacheSubnetGroupName")
        ),
        "SecurityGroupIds": groups,
        "TransitEncryptionEnabled": _pick(opts.tls, src.tls if src else None),
        "SnapshotName": snapshot.name,
    }
    common = {k: v for k, v in common.items() if v is not None and v != []}
    if snapshot.kind == CACHE_CLUSTER:
        return {"CacheClusterId": target, "NumCacheNodes": 1, **common}
    req = {"ReplicationGroupId": target, "ReplicationGroupDescription": description, **common}
    node_groups = as_int(raw.get("NumNodeGroups")) or 1
    if node_groups > 1 or (src is not None and src.cluster_mode):
        req["NumNodeGroups"] = node_groups
    elif src is not None and src.raw.get("MemberClusters"):
        req["NumCacheClusters"] = len(src.raw["MemberClusters"])
    if src is not None:
        if src.raw.get("UserGroupIds"):
            req["UserGroupIds"] = list(src.raw["UserGroupIds"])
        if src.raw.get("AutomaticFailover") in ("enabled", "enabling"):
            req["AutomaticFailoverEnabled"] = True
        if src.raw.get("MultiAZ") == "enabled":
            req["MultiAZEnabled"] = True
    return req


def restore_warnings(source: CacheRef | None) -> list[str]:
    """What a restore cannot copy and the operator must redo."""
    if source is not None and source.raw.get("AuthTokenEnabled"):
        return [
            f"{source.name} uses an AUTH token, which AWS never returns: the new cache has "
            "none until you set one (modify-replication-group --auth-token ...)"
        ]
    return []


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
        warnings=restore_warnings(source),
    )


def wait_cache(
    client: Any,
    name: str,
    timeout: float,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CacheRef:
    """Wait until the new cache is available (backoff from 5 s); create-failed or too slow:
    exit 5."""

    def fetch() -> tuple[str, CacheRef | None]:
        cache = describe_by_name(client, name)
        return ((cache.status or "?") if cache else "creating"), cache

    failed = {"create-failed", "failed", "incompatible-restore"}
    hint = "it carries on in AWS; check with `closeup-ops caches`"
    return poll(fetch, f"restoring {name!r}", timeout, 5.0, failed, hint, update, sleep, clock)
