"""Snapshot create and delete as a runbook step can repeat them (SPEC, exit codes: "an
already-present ... snapshot state that was asked for is success").

- create: a snapshot of that name already made of the SAME cache, or being made, is
  success, and nothing is sent; the name taken by another cache, or a snapshot of this
  cache that failed or is being deleted, is exit 5 with what to do.
- delete: a snapshot already "deleting" is success, and nothing is sent. (AWS refuses a
  second DeleteSnapshot with InvalidSnapshotState.)
Each answers an Outcome whose `already` says why nothing changed, for the note and the
audit line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from closeup_ops.connect.aws import error_code
from closeup_ops.connect.cache_ref import SERVERLESS, CacheRef
from closeup_ops.errors import AwsResourceError
from closeup_ops.ops.aws.snapshots import (
    NODE,
    SnapshotInfo,
    create_snapshot,
    delete_snapshot,
    find_snapshot,
)

# SnapshotStatus (service model): creating | available | restoring | copying | deleting.
# All but "deleting" are a snapshot being made or made; restoring and copying are a made
# snapshot in use (a restore or a copy reads it).
PRESENT = {"creating", "available", "restoring", "copying"}
DELETING = "deleting"


@dataclass
class Outcome:
    snapshot: SnapshotInfo
    already: str | None = None  # set when the state asked for was there: nothing changed

    def audit_result(self) -> str:
        return f"ok: {self.already}, nothing changed" if self.already else "ok"


def _namespace(kind: str) -> str:
    return SERVERLESS if kind == SERVERLESS else NODE


def _of(snap: SnapshotInfo, cache: CacheRef) -> bool:
    """Is `snap` a snapshot of `cache`? (AWS keeps ids lower-case; a member cluster's
    snapshot names its cluster as well as its group.)"""
    names = {str(n).lower() for n in (snap.cache, snap.raw.get("CacheClusterId")) if n}
    return cache.name.lower() in names


def _existing(snap: SnapshotInfo, cache: CacheRef) -> Outcome:
    status = snap.status.lower()
    if not _of(snap, cache):
        raise AwsResourceError(
            f"snapshot {snap.name!r} already exists, of {snap.kind} {snap.cache or '?'}, "
            f"not of {cache.name}",
            "pick another --name, or leave --name out for <cache>-<UTC yyyymmdd-HHMM>",
        )
    if status in PRESENT:
        return Outcome(snap, f"already exists, state {status}")
    if status == DELETING:
        hint = "wait until it is gone (`closeup-ops snapshot list`), or pick another --name"
    else:
        hint = (
            f"delete it (`closeup-ops snapshot delete {snap.name} --yes`) and create it "
            "again, or pick another --name"
        )
    raise AwsResourceError(f"snapshot {snap.name!r} of {cache.name} is {status}", hint)


def ensure_snapshot(client: Any, cache: CacheRef, name: str) -> Outcome:
    """Create snapshot `name` of `cache`, unless it is already there (see the module)."""
    kind = _namespace(cache.kind)
    found = find_snapshot(client, name, kind)
    if found is not None:
        return _existing(found, cache)
    try:
        return Outcome(create_snapshot(client, cache, name))
    except Exception as exc:
        if "AlreadyExists" not in error_code(exc):
            raise
        found = find_snapshot(client, name, kind)  # made between the look and the call
        if found is None:
            raise
        return _existing(found, cache)


def remove_snapshot(client: Any, snap: SnapshotInfo) -> Outcome:
    """Delete `snap` (found just before), unless it is already going (see the module)."""
    if snap.status.lower() == DELETING:
        return Outcome(snap, "already deleting")
    try:
        return Outcome(delete_snapshot(client, snap))
    except Exception as exc:
        code = error_code(exc)
        if "NotFound" in code:  # it was there a moment ago: someone else deleted it
            return Outcome(dataclasses.replace(snap, status="deleted"), "already deleted")
        if "InvalidSnapshotState" not in code and "SnapshotStateFault" not in code:
            raise
        now = find_snapshot(client, snap.name, _namespace(snap.kind))
        if now is None:
            return Outcome(dataclasses.replace(snap, status="deleted"), "already deleted")
        if now.status.lower() == DELETING:
            return Outcome(now, "already deleting")
        raise
