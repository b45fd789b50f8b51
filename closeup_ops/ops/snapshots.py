"""Snapshots of every kind of cache: create, list, wait, restore (always to a NEW cache), delete.

Serverless caches have their own API (CreateServerlessCacheSnapshot, ...); replication
groups and cache clusters share CreateSnapshot/DescribeSnapshots. There is no in-place
restore: a restore creates a new cache of the snapshot's kind.
"""

from __future__ import annotations

import datetime
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
    optional_serverless,
    pages,
)
from closeup_ops.errors import AwsResourceError, UsageError

DONE = "available"
FAILED = {"failed"}


@dataclass
class SnapshotInfo:
    name: str
    kind: str  # the source's kind: serverless | replication-group | cache-cluster
    cache: str | None  # the source cache
    status: str
    source: str | None  # manual | automated
    created: str | None
    engine: str | None
    engine_version: str | None
    node_type: str | None
    arn: str | None
    size_bytes: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
    return None if value is None else str(value)


def from_node_snapshot(s: dict[str, Any]) -> SnapshotInfo:
    times = [n.get("SnapshotCreateTime") for n in s.get("NodeSnapshots") or []]
    times = [t for t in times if t is not None]
    group = s.get("ReplicationGroupId")
    return SnapshotInfo(
        name=s["SnapshotName"],
        kind=REPLICATION_GROUP if group else CACHE_CLUSTER,
        cache=group or s.get("CacheClusterId"),
        status=str(s.get("SnapshotStatus", "?")),
        source=s.get("SnapshotSource"),
        created=_iso(min(times)) if times else None,
        engine=s.get("Engine"),
        engine_version=s.get("EngineVersion"),
        node_type=s.get("CacheNodeType"),
        arn=s.get("ARN"),
        raw=s,
    )


def from_serverless_snapshot(s: dict[str, Any]) -> SnapshotInfo:
    config = s.get("ServerlessCacheConfiguration") or {}
    return SnapshotInfo(
        name=s["ServerlessCacheSnapshotName"],
        kind=SERVERLESS,
        cache=config.get("ServerlessCacheName"),
        status=str(s.get("Status", "?")),
        source=s.get("SnapshotType"),
        created=_iso(s.get("CreateTime")),
        engine=config.get("Engine"),
        engine_version=config.get("MajorEngineVersion"),
        node_type=None,
        arn=s.get("ARN"),
        size_bytes=_int(s.get("BytesUsedForCache")),
        raw=s,
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def default_name(cache: str, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{cache}-{now.strftime('%Y%m%d-%H%M')}"


def list_snapshots(client: Any, cache: CacheRef | None = None) -> list[SnapshotInfo]:
    """Both kinds of snapshots (only the cache's own when `cache` is given), oldest first.
    Without a cache the two Describe calls run side by side: one round trip, not two."""
    if cache is not None and cache.kind == SERVERLESS:
        out = _serverless_snapshots(client, {"ServerlessCacheName": cache.name})
    elif cache is not None:
        key = "ReplicationGroupId" if cache.kind == REPLICATION_GROUP else "CacheClusterId"
        out = _node_snapshots(client, {key: cache.name})
    else:
        out = _side_by_side(
            lambda: _node_snapshots(client, {}), lambda: _serverless_snapshots(client, {})
        )
    return sorted(out, key=lambda s: (s.created or "", s.name))


def _node_snapshots(client: Any, kw: dict[str, str]) -> list[SnapshotInfo]:
    return [from_node_snapshot(s) for s in pages(client.describe_snapshots, "Snapshots", **kw)]


def _serverless_snapshots(client: Any, kw: dict[str, str]) -> list[SnapshotInfo]:
    found = optional_serverless(
        client.describe_serverless_cache_snapshots, "ServerlessCacheSnapshots", **kw
    )
    return [from_serverless_snapshot(s) for s in found]


def _side_by_side(
    first: Callable[[], list[SnapshotInfo]], second: Callable[[], list[SnapshotInfo]]
) -> list[SnapshotInfo]:
    """first() + second(), the second in a thread (botocore clients are thread-safe)."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = second()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        out = first()
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    return out + box["value"]


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def get_snapshot(client: Any, name: str) -> SnapshotInfo:
    """The snapshot called `name`, node-based or serverless; exit 5 when there is none."""
    try:
        found = client.describe_snapshots(SnapshotName=name).get("Snapshots") or []
        if found:
            return from_node_snapshot(found[0])
    except Exception as exc:
        if "NotFound" not in _code(exc):
            raise
    try:
        found = optional_serverless(
            client.describe_serverless_cache_snapshots,
            "ServerlessCacheSnapshots",
            ServerlessCacheSnapshotName=name,
        )
        if found:
            return from_serverless_snapshot(found[0])
    except Exception as exc:
        if "NotFound" not in _code(exc):
            raise
    raise AwsResourceError(
        f"snapshot {name!r} not found", "list them with `closeup-ops snapshot list`"
    )


def create_snapshot(client: Any, cache: CacheRef, name: str) -> SnapshotInfo:
    if cache.kind == SERVERLESS:
        got = client.create_serverless_cache_snapshot(
            ServerlessCacheSnapshotName=name, ServerlessCacheName=cache.name
        )
        return from_serverless_snapshot(got["ServerlessCacheSnapshot"])
    key = "ReplicationGroupId" if cache.kind == REPLICATION_GROUP else "CacheClusterId"
    got = client.create_snapshot(SnapshotName=name, **{key: cache.name})
    return from_node_snapshot(got["Snapshot"])


def wait_snapshot(
    client: Any,
    snapshot: SnapshotInfo,
    timeout: float,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SnapshotInfo:
    """Poll until available, with backoff (2 s growing to 30 s), for at most `timeout` s.
    A failed snapshot, or one still not done at the deadline, exits 5."""
    deadline = clock() + timeout
    delay = 2.0
    while True:
        update(snapshot.status)
        if snapshot.status == DONE:
            return snapshot
        if snapshot.status in FAILED:
            raise AwsResourceError(
                f"snapshot {snapshot.name!r} failed",
                "see the cache's events in the AWS console and retry",
            )
        left = deadline - clock()
        if left <= 0:
            raise AwsResourceError(
                f"snapshot {snapshot.name!r} is still {snapshot.status} after {timeout:.0f} s",
                "it carries on in AWS; check with `closeup-ops snapshot list` or raise --timeout",
            )
        sleep(min(delay, left))
        delay = min(delay * 1.5, 30.0)
        snapshot = get_snapshot(client, snapshot.name)


def delete_snapshot(client: Any, snapshot: SnapshotInfo) -> SnapshotInfo:
    if snapshot.kind == SERVERLESS:
        got = client.delete_serverless_cache_snapshot(ServerlessCacheSnapshotName=snapshot.name)
        return from_serverless_snapshot(got["ServerlessCacheSnapshot"])
    return from_node_snapshot(client.delete_snapshot(SnapshotName=snapshot.name)["Snapshot"])


# --- restore -------------------------------------------------------------------------------


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
        extra = {"MajorEngineVersion": major, "SubnetIds": subnets, "SecurityGroupIds": groups}
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
    node_groups = _int(raw.get("NumNodeGroups")) or 1
    if node_groups > 1 or (src is not None and src.cluster_mode):
        req["NumNodeGroups"] = node_groups
    elif src is not None and src.raw.get("MemberClusters"):
        req["NumCacheClusters"] = len(src.raw["MemberClusters"])
    return req


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
    )


def wait_cache(
    client: Any,
    name: str,
    timeout: float,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CacheRef:
    """Poll the new cache until available (backoff 5 s growing to 30 s); exit 5 on
    create-failed or at the deadline."""
    deadline = clock() + timeout
    delay = 5.0
    while True:
        cache = describe_by_name(client, name)
        status = cache.status if cache else "creating"
        update(status or "?")
        if cache is not None and status == DONE:
            return cache
        if status in ("create-failed", "failed", "incompatible-restore"):
            raise AwsResourceError(
                f"restoring {name!r} failed: {status}", "see the cache's events in the AWS console"
            )
        left = deadline - clock()
        if left <= 0:
            raise AwsResourceError(
                f"{name!r} is still {status} after {timeout:.0f} s",
                "it carries on in AWS; check with `closeup-ops caches`",
            )
        sleep(min(delay, left))
        delay = min(delay * 1.5, 30.0)
