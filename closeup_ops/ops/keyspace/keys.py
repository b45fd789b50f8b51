"""`keys`: list, inspect and delete keys, SCAN only, on every primary.

Per-key data (PTTL, MEMORY USAGE, TYPE, values) and UNLINKs ride in pipelined batches
behind each SCAN (see keyspace_scan). Faults keep their count: a lost connection says how
many keys were scanned, Ctrl-C says what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import audit, errors
from closeup_ops.connect.redis import RedisTarget
from closeup_ops.errors import ConnectError, Interrupted, UsageError
from closeup_ops.ops.keyspace.encode import key_text
from closeup_ops.ops.keyspace.scan import (
    ConnectionLost,
    NodeChannel,
    ServerRefused,
    first_error,
    has_error,
    pack,
    per_key,
    scan_node,
)

# SCAN TYPE values the server knows (modules add their own names, e.g. ReJSON-RL).
TYPES = ("string", "list", "set", "zset", "hash", "stream", "ReJSON-RL")
DEFAULT_COUNT = 1000
UNLINK_BATCH = 500
SAMPLE = 10

PTTL = per_key("PTTL")
MEMORY = per_key("MEMORY", "USAGE")
TYPE = per_key("TYPE")


@dataclass(frozen=True)
class ScanSpec:
    """What to scan: pattern, SCAN TYPE, at most `limit` keys, SCAN COUNT hint."""

    pattern: str = "*"
    type: str | None = None
    limit: int | None = None
    count: int = DEFAULT_COUNT

    @property
    def match(self) -> bytes:
        return self.pattern.encode("utf-8", "surrogateescape")


def check_spec(spec: ScanSpec) -> ScanSpec:
    """Refuse bad options before connecting (exit 2); returns the spec, type normalised."""
    if not spec.pattern:
        raise UsageError(
            "the pattern is empty", "give a glob such as 'otp:*' (or omit it for all keys)"
        )
    if "\n" in spec.pattern or "\r" in spec.pattern:
        raise UsageError("the pattern contains a line break", "give a glob such as 'otp:*'")
    if spec.limit is not None and spec.limit < 1:
        raise UsageError(f"--limit {spec.limit} is not valid", "use a positive number of keys")
    if not 1 <= spec.count <= 100_000:
        raise UsageError(
            f"--scan-count {spec.count} is not valid", "use 1 to 100000 (default 1000)"
        )
    if spec.type is not None:
        known = {t.lower(): t for t in TYPES}
        if spec.type.lower() not in known:
            raise UsageError(f"--type {spec.type} is not valid", "use one of " + ", ".join(TYPES))
        spec = ScanSpec(spec.pattern, known[spec.type.lower()], spec.limit, spec.count)
    return spec


@dataclass
class ScanStats:
    """What has been done so far (also what a fault or Ctrl-C reports)."""

    nodes: int = 0
    nodes_done: int = 0
    scanned: int = 0
    listed: int = 0
    deleted: int | None = None
    memory_refused: str | None = None

    def done(self) -> str:
        text = f"scanned {self.scanned} keys on {self.nodes_done} of {self.nodes} primaries"
        if self.listed:
            text += f", listed {self.listed}"
        if self.deleted is not None:
            text += f", deleted {self.deleted}"
        return text


@contextmanager
def guard(stats: ScanStats) -> Iterator[None]:
    """Faults in the middle of a scan, with the count of what was done."""
    try:
        yield
    except ConnectionLost as exc:
        raise _lost(stats, f"{exc.address}: {exc.reason}") from None
    except ServerRefused as exc:
        raise _refusal(exc.address, exc.message) from None
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {stats.done()}") from None
    except Exception as exc:
        # A node that cannot be reached after others were scanned (cluster mode).
        if stats.scanned and _is_connection_error(exc):
            raise _lost(stats, str(exc).split("\n")[0]) from None
        raise


def _lost(stats: ScanStats, reason: str) -> ConnectError:
    done = f"; deleted at least {stats.deleted}" if stats.deleted is not None else ""
    return ConnectError(
        f"scanned {stats.scanned} keys before the connection was lost ({reason}){done}",
        "check the server and rerun; SCAN starts again from the beginning",
    )


def _is_connection_error(exc: BaseException) -> bool:
    import redis.exceptions as rx

    return isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError))


def _refusal(address: str, message: str) -> errors.OpsError:
    import redis.exceptions

    return errors.classify(redis.exceptions.ResponseError(message), address)


def nodes(target: RedisTarget) -> list[tuple[str, Any]]:
    return target.primaries()


@dataclass
class KeyBatch:
    node: str
    keys: list[bytes]
    ttl_ms: list[int] | None = None
    memory: list[int | None] | None = None
    values: list[dict[str, Any]] | None = None


def scan_primaries(
    target: RedisTarget,
    spec: ScanSpec,
    stats: ScanStats,
    extras: Callable[[list[bytes]], tuple[bytes, int]] | None,
    progress: Callable[[ScanStats], None] | None = None,
) -> Iterator[tuple[str, list[bytes], list[Any]]]:
    """(node, keys, per-key replies) for every matching key on every primary, cut at
    --limit; stats.scanned counts what was handed out. Use inside guard()."""
    primaries = nodes(target)
    stats.nodes = len(primaries)
    for address, client in primaries:
        channel = NodeChannel(address, client)
        try:
            for batch in scan_node(channel, spec.match, spec.count, spec.type, extras):
                keys = batch.keys
                if spec.limit is not None:
                    keys = keys[: spec.limit - stats.scanned]
                yield address, keys, batch.replies
                stats.scanned += len(keys)
                if progress:
                    progress(stats)
                if spec.limit is not None and stats.scanned >= spec.limit:
                    stats.nodes_done += 1
                    return
        finally:
            channel.close()
        stats.nodes_done += 1


def iter_keys(
    target: RedisTarget,
    spec: ScanSpec,
    stats: ScanStats,
    *,
    ttl: bool = False,
    memory: bool = False,
    values: bool = False,
    reveal: bool = False,
) -> Iterator[KeyBatch]:
    """Matching keys in batches, with the per-key data asked for. Use inside guard()."""
    primaries = nodes(target)
    stats.nodes = len(primaries)
    base = int(ttl) + int(values)

    def extras(keys: list[bytes]) -> tuple[bytes, int]:
        parts = []
        if ttl:
            parts.append(PTTL(keys))
        if values:
            parts.append(TYPE(keys))
        cols = base
        if memory and stats.memory_refused is None:
            parts.append(MEMORY(keys))
            cols += 1
        return b"".join(parts), cols * len(keys)

    want_extras = ttl or memory or values
    for address, client in primaries:
        channel = NodeChannel(address, client)
        side = NodeChannel(address, client) if values else None
        try:
            for raw in scan_node(
                channel, spec.match, spec.count, spec.type, extras if want_extras else None
            ):
                stats.scanned += len(raw.keys)
                batch, types = _split(raw.node, raw.keys, raw.replies, ttl, values, memory, stats)
                if side is not None:
                    from closeup_ops.ops.keyspace.values import fetch_values

                    batch.values = fetch_values(side, batch.keys, types, reveal)
                if spec.limit is not None and stats.listed + len(batch.keys) >= spec.limit:
                    _trim(batch, spec.limit - stats.listed)
                    stats.listed += len(batch.keys)
                    yield batch
                    return
                stats.listed += len(batch.keys)
                yield batch
        finally:
            channel.close()
            if side is not None:
                side.close()
        stats.nodes_done += 1


def _split(
    node: str,
    keys: list[bytes],
    replies: list[Any],
    ttl: bool,
    values: bool,
    memory: bool,
    stats: ScanStats,
) -> tuple[KeyBatch, list[Any]]:
    """Cut the flat reply list into columns: PTTL..., TYPE..., MEMORY USAGE..."""
    n = len(keys)
    batch = KeyBatch(node, keys)
    types: list[Any] = []
    at = 0
    if ttl:
        batch.ttl_ms = _ints(replies[at : at + n], node)
        at += n
    if values:
        types = replies[at : at + n]
        at += n
    if memory:
        if len(replies) > at:
            batch.memory = _memory(replies[at : at + n], node, stats)
        else:
            batch.memory = [None] * n
    return batch, types


def _ints(replies: list[Any], node: str) -> list[int]:
    if has_error(replies):
        raise _refusal(node, first_error(replies))
    return replies


def _memory(replies: list[Any], node: str, stats: ScanStats) -> list[int | None]:
    """MEMORY USAGE replies; a refusal (unknown command, NOPERM) becomes None, noted once."""
    if not has_error(replies):
        return replies
    if stats.memory_refused is None:
        stats.memory_refused = f"{node} refused MEMORY USAGE: {first_error(replies)}"
    return [None if isinstance(r, Exception) else r for r in replies]


def _trim(batch: KeyBatch, n: int) -> None:
    batch.keys = batch.keys[:n]
    for name in ("ttl_ms", "memory", "values"):
        column = getattr(batch, name)
        if column is not None:
            setattr(batch, name, column[:n])


# --- delete --------------------------------------------------------------------------


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


def delete_keys(
    target: RedisTarget, spec: ScanSpec, *, yes: bool, progress: Any = None
) -> DeleteReport:
    """Dry run (count and sample) unless `yes`; then UNLINK every matching key found by
    SCAN, and only those. One audit entry, whatever the outcome."""
    stats = ScanStats(deleted=0 if yes else None)
    report = DeleteReport(target.endpoint, spec.pattern, spec.type, not yes, 0, 0)
    remaining = [spec.limit if spec.limit is not None else -1]

    def unlink(keys: list[bytes]) -> tuple[bytes, int]:
        if remaining[0] >= 0:
            keys = keys[: remaining[0]]
            remaining[0] -= len(keys)
        if not keys:
            return b"", 0
        return unlink_commands(keys, target.cluster)

    result = "ok"
    try:
        with guard(stats):
            primaries = nodes(target)
            stats.nodes = report.nodes = len(primaries)
            for address, client in primaries:
                channel = NodeChannel(address, client)
                worker = NodeChannel(address, client) if yes else None
                batches = scan_node(
                    channel, spec.match, spec.count, spec.type, unlink if yes else None, worker
                )
                try:
                    for raw in batches:
                        stats.scanned += len(raw.keys)
                        keys = raw.keys
                        if spec.limit is not None:
                            keys = keys[: max(0, spec.limit - report.matched)]
                        report.matched += len(keys)
                        for reply in raw.replies:
                            if isinstance(reply, Exception):
                                raise ServerRefused(address, str(reply))
                            report.deleted += reply
                        stats.deleted = report.deleted if yes else None
                        room = SAMPLE - len(report.sample)
                        report.sample.extend(key_text(k) for k in keys[: max(room, 0)])
                        if progress:
                            progress(stats)
                        if spec.limit is not None and report.matched >= spec.limit:
                            break
                except (Exception, KeyboardInterrupt) as exc:
                    if worker is not None and not isinstance(exc, ConnectionLost):
                        # UNLINKs already sent were done by the server: count them too.
                        done = worker.drain()
                        report.deleted += sum(r for r in done if type(r) is int)
                        stats.deleted = report.deleted
                    raise
                finally:
                    batches.close()
                    channel.close()
                    if worker is not None:
                        worker.close()
                stats.nodes_done += 1
                if spec.limit is not None and report.matched >= spec.limit:
                    break
    except errors.OpsError as exc:
        result = "interrupted" if isinstance(exc, Interrupted) else f"failed: {exc.message}"
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
