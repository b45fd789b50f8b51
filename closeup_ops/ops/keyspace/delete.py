"""`keys --delete`: a dry run (count and sample) unless --yes; then UNLINK every matching
key found by SCAN, and only those, on the primaries (never on a replica), shards at once.

UNLINKs ride behind each SCAN on a second connection (see scan.py). The count is exact
whatever stops the run: each shard's worker counts the UNLINK replies it reads, and when
stopped (Ctrl-C, --limit, another shard lost) it first reads the replies still due, so what
the server already did is counted too. One audit entry, whatever the outcome.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import audit, errors
from closeup_ops.connect.redis import RedisTarget
from closeup_ops.errors import Interrupted
from closeup_ops.ops.keyspace.encode import key_text
from closeup_ops.ops.keyspace.keys import drive, guard
from closeup_ops.ops.keyspace.scan import (
    ConnectionLost,
    NodeChannel,
    ServerRefused,
    pack,
    scan_node,
)
from closeup_ops.ops.keyspace.shards import Shard
from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, ScanStats, ShardRead

UNLINK_BATCH = 500
SAMPLE = 10


@dataclass
class DeleteReport:
    endpoint: str
    pattern: str
    type: str | None
    dry_run: bool
    matched: int
    deleted: int
    sample: list[str] = field(default_factory=list)
    nodes: int = 0
    shards: list[ShardRead] = field(default_factory=list)
    parallel: int = 0  # shards worked at once
    slot_map_changed: bool | None = None


def unlink_commands(keys: list[bytes], cluster: bool) -> tuple[bytes, int]:
    """UNLINK in batches; in cluster mode one command per hash slot (no CROSSSLOT)."""
    if cluster:
        from redis.crc import key_slot

        groups: dict[int, list[bytes]] = {}
        for key in keys:
            groups.setdefault(key_slot(key), []).append(key)
        chunks = list(groups.values())
    else:
        chunks = [keys[i : i + UNLINK_BATCH] for i in range(0, len(keys), UNLINK_BATCH)]
    return b"".join(pack("UNLINK", *chunk) for chunk in chunks), len(chunks)


class _Quota:
    """--limit shared by the shards: keys are taken before their UNLINK is sent."""

    def __init__(self, limit: int | None):
        self.left = limit
        self.lock = threading.Lock()

    def take(self, n: int) -> int:
        if self.left is None:
            return n
        with self.lock:
            got = min(n, self.left)
            self.left -= got
            return got

    def give_back(self, n: int) -> None:
        """Keys taken whose UNLINK removed nothing (SCAN may return a key twice - Valkey 9
        does when keys are UNLINKed behind its cursor - or the app deleted it first):
        --limit counts what the server removed."""
        if self.left is not None and n > 0:
            with self.lock:
                self.left += n


def delete_keys(
    target: RedisTarget,
    spec: ScanSpec,
    *,
    yes: bool,
    progress: Any = None,
    reach: Reach = Reach(),
) -> DeleteReport:
    """Dry run (count and sample) unless `yes`; then UNLINK every matching key found by
    SCAN, and only those. One audit entry, whatever the outcome."""
    stats = ScanStats(deleted=0 if yes else None)
    report = DeleteReport(target.endpoint, spec.pattern, spec.type, not yes, 0, 0)
    quota = _Quota(spec.limit)
    tallies: list[list[int]] = []  # per shard: [UNLINKed keys the server confirmed]

    def job(shard: Shard) -> Iterator[tuple[list[bytes], int, int]]:
        """(keys, matched, deleted) per batch, on the shard's primary."""
        tally = [0]
        tallies.append(tally)
        taken: deque[tuple[int, int]] = deque()  # (keys offered, keys taken) per UNLINK send

        def unlink(keys: list[bytes]) -> tuple[bytes, int]:
            got = quota.take(len(keys))
            taken.append((len(keys), got))
            return unlink_commands(keys[:got], target.cluster) if got else (b"", 0)

        channel = shard.primary_channel()
        worker = NodeChannel(channel.address, channel.client, channel.limiter) if yes else None
        batches = scan_node(
            channel, spec.match, spec.count, spec.type, unlink if yes else None, worker
        )
        try:
            for raw in batches:
                deleted = 0
                for reply in raw.replies:
                    if isinstance(reply, Exception):
                        raise ServerRefused(channel.address, str(reply))
                    deleted += reply
                tally[0] += deleted
                matched = _matched(raw.keys, yes, taken, quota)
                if yes:  # with --yes a match is a key the server removed (no duplicates)
                    quota.give_back(matched - deleted)
                    matched = deleted
                yield raw.keys, matched, deleted
        except (Exception, GeneratorExit, KeyboardInterrupt) as exc:
            if worker is not None and not isinstance(exc, ConnectionLost):
                # UNLINKs already sent were done by the server: count them too.
                tally[0] += sum(r for r in worker.drain() if type(r) is int)
            raise
        finally:
            batches.close()
            channel.close()
            if worker is not None:
                worker.close()

    result = "ok"
    try:
        with guard(stats):
            feed = drive(target, stats, reach, job, primaries_only=True)
            try:
                with closing(feed):
                    for keys, matched, deleted in feed:
                        stats.scanned += len(keys)
                        report.matched += matched
                        room = max(0, min(SAMPLE - len(report.sample), matched))
                        report.sample.extend(key_text(k) for k in keys[:room])
                        if yes:
                            report.deleted += deleted
                            stats.deleted = report.deleted
                        if progress:
                            progress(stats)
                        if spec.limit is not None and report.matched >= spec.limit:
                            break
            finally:  # the workers are gone: their tallies are final
                if yes:
                    report.deleted = stats.deleted = sum(t[0] for t in tallies)
                report.nodes, report.shards = stats.nodes, stats.shards
                report.parallel = stats.parallel
                report.slot_map_changed = stats.slot_map_changed
    except BaseException as exc:  # whatever stopped it, the audit line says it did not finish
        err = errors.classify(exc)
        result = "interrupted" if isinstance(err, Interrupted) else f"failed: {err.message}"
        raise
    finally:
        if yes:
            audit.record(
                "keys --delete",
                target.endpoint,
                result,
                pattern=spec.pattern,
                type=spec.type,
                limit=spec.limit,
                matched=report.matched,
                deleted=report.deleted,
            )
    return report


def _matched(keys: list[bytes], yes: bool, taken: deque[tuple[int, int]], quota: _Quota) -> int:
    """How many of this batch's keys count under --limit: those its UNLINKs took (they
    were taken when sent, in order), or in a dry run as many as the quota still allows."""
    if not yes:
        return quota.take(len(keys))
    offered = got = 0
    while offered < len(keys) and taken:
        n, g = taken.popleft()
        offered += n
        got += g
    return got
