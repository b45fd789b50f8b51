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

from closeup_ops.connect.aws import error_code, optional_serverless, pages
from closeup_ops.connect.cache_ref import CACHE_CLUSTER, REPLICATION_GROUP, SERVERLESS, CacheRef
from closeup_ops.errors import AwsResourceError, UsageError

DONE = "available"
# A snapshot that fails, or is deleted while we wait ("deleting", then gone), never becomes
# available (service model: creating | available | restoring | copying | deleting).
FAILED = {"failed", "deleting", "deleted"}


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
        size_bytes=as_int(s.get("BytesUsedForCache")),
        raw=s,
    )


def as_int(value: Any) -> int | None:
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


NODE = "node"  # get_snapshot(kind=...): a replication group's or cache cluster's snapshot


def _node_snapshot(client: Any, name: str) -> SnapshotInfo | None:
    try:
        found = client.describe_snapshots(SnapshotName=name).get("Snapshots") or []
    except Exception as exc:
        if "NotFound" not in error_code(exc):
            raise
        return None
    return from_node_snapshot(found[0]) if found else None


def _serverless_snapshot(client: Any, name: str) -> SnapshotInfo | None:
    try:
        found = optional_serverless(
            client.describe_serverless_cache_snapshots,
            "ServerlessCacheSnapshots",
            ServerlessCacheSnapshotName=name,
        )
    except Exception as exc:
        if "NotFound" not in error_code(exc):
            raise
        return None
    return from_serverless_snapshot(found[0]) if found else None


def find_snapshot(client: Any, name: str, kind: str | None = None) -> SnapshotInfo | None:
    """The snapshot called `name`, or None: node-based (kind "node"), serverless
    ("serverless"), or either (None). The two kinds live in separate namespaces, so one name
    can be both: then it is refused (exit 2) rather than guessed."""
    node = _node_snapshot(client, name) if kind in (None, NODE) else None
    serverless = _serverless_snapshot(client, name) if kind in (None, SERVERLESS) else None
    if node is not None and serverless is not None:
        raise UsageError(
            f"{name!r} is both a node-based snapshot (of {node.cache or '?'}) and a "
            f"serverless snapshot (of {serverless.cache or '?'})",
            "say which with --node or --serverless",
        )
    return node or serverless


def not_found(name: str, kind: str | None = None, hint: str = "") -> AwsResourceError:
    what = {NODE: "node-based snapshot", SERVERLESS: "serverless snapshot"}.get(
        kind or "", "snapshot"
    )
    return AwsResourceError(
        f"{what} {name!r} not found", hint or "list them with `closeup-ops snapshot list`"
    )


def absent(name: str, kind: str | None = None) -> SnapshotInfo:
    """A name no snapshot has, shown as one (`snapshot delete --missing-ok`)."""
    return SnapshotInfo(
        name=name,
        kind=kind or "?",
        cache=None,
        status="not found",
        source=None,
        created=None,
        engine=None,
        engine_version=None,
        node_type=None,
        arn=None,
    )


def get_snapshot(client: Any, name: str, kind: str | None = None) -> SnapshotInfo:
    """find_snapshot, but none at all is exit 5."""
    found = find_snapshot(client, name, kind)
    if found is None:
        raise not_found(name, kind)
    return found


def create_snapshot(client: Any, cache: CacheRef, name: str) -> SnapshotInfo:
    if cache.kind == SERVERLESS:
        got = client.create_serverless_cache_snapshot(
            ServerlessCacheSnapshotName=name, ServerlessCacheName=cache.name
        )
        return from_serverless_snapshot(got["ServerlessCacheSnapshot"])
    key = "ReplicationGroupId" if cache.kind == REPLICATION_GROUP else "CacheClusterId"
    got = client.create_snapshot(SnapshotName=name, **{key: cache.name})
    return from_node_snapshot(got["Snapshot"])


def poll(
    fetch: Callable[[], tuple[str, Any]],
    what: str,
    timeout: float,
    first_delay: float,
    failed: set[str] | Callable[[str], bool],
    hint: str,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Call fetch() -> (status, value) until the status is available, with backoff
    (first_delay, x1.5, at most 30 s), for at most `timeout` s. A failed status, or the
    deadline, exits 5."""
    deadline = clock() + timeout
    delay = first_delay
    is_failed = failed if callable(failed) else failed.__contains__
    while True:
        status, value = fetch()
        update(status)
        if status == DONE:
            return value
        if is_failed(status):
            raise AwsResourceError(f"{what} failed: {status}", "see its events in the AWS console")
        left = deadline - clock()
        if left <= 0:
            raise AwsResourceError(f"{what} is still {status} after {timeout:.0f} s", hint)
        sleep(min(delay, left))
        delay = min(delay * 1.5, 30.0)


def wait_snapshot(
    client: Any,
    snapshot: SnapshotInfo,
    timeout: float,
    update: Callable[[str], None] = lambda status: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SnapshotInfo:
    """Wait until the snapshot is available (backoff from 2 s); failed or too slow: exit 5."""
    pending = [snapshot]

    def fetch() -> tuple[str, SnapshotInfo | None]:
        if pending:
            snap = pending.pop()
        else:
            try:
                kind = SERVERLESS if snapshot.kind == SERVERLESS else NODE
                snap = get_snapshot(client, snapshot.name, kind)
            except AwsResourceError:  # deleted while we waited
                return "deleted", None
        return snap.status.lower(), snap

    hint = "it carries on in AWS; check with `closeup-ops snapshot list` or raise --timeout"
    what = f"snapshot {snapshot.name!r}"
    return poll(fetch, what, timeout, 2.0, FAILED, hint, update, sleep, clock)


def delete_snapshot(client: Any, snapshot: SnapshotInfo) -> SnapshotInfo:
    if snapshot.kind == SERVERLESS:
        got = client.delete_serverless_cache_snapshot(ServerlessCacheSnapshotName=snapshot.name)
        return from_serverless_snapshot(got["ServerlessCacheSnapshot"])
    return from_node_snapshot(client.delete_snapshot(SnapshotName=snapshot.name)["Snapshot"])
