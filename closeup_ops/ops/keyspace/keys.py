"""`keys`: list and inspect keys, SCAN only, on every shard (all at once in cluster mode).

Per-key data (PTTL, MEMORY USAGE, TYPE, values) rides in pipelined batches behind each
SCAN (see scan.py); shards are worked by a bounded pool of threads (see shards.py), from a
replica of each under --replicas, at most --rate commands a second per node. Faults keep
their count: a lost connection says how many keys were scanned, Ctrl-C says what was done.
The delete lives in delete.py; what a run is asked and its tally, in spec.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

from closeup_ops import errors
from closeup_ops.connect.redis import RedisTarget
from closeup_ops.errors import ConnectError, Interrupted
from closeup_ops.ops.keyspace.scan import (
    Batch,
    ConnectionLost,
    NodeChannel,
    ServerRefused,
    first_error,
    has_error,
    per_key,
    scan_node,
)
from closeup_ops.ops.keyspace.shards import (
    DONE,
    Shard,
    choose_parallel,
    fan_out,
    plan,
    slot_map,
)
from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, ScanStats

PTTL = per_key("PTTL")
MEMORY = per_key("MEMORY", "USAGE")
TYPE = per_key("TYPE")


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


SLOT_MAP_CHANGED = (
    "the cluster's slot map changed during the scan (a slot migration or failover): "
    "SCAN cannot promise every key was seen exactly once; rerun when it is stable"
)


def drive(
    target: RedisTarget,
    stats: ScanStats,
    reach: Reach,
    job: Callable[[Shard], Iterator[Any]],
    *,
    primaries_only: bool = False,
    plain: tuple[ScanSpec, Callable[[Batch], Any]] | None = None,
) -> Iterator[Any]:
    """Every item of job(shard) for every shard, shards worked `reach.parallel` at a time.

    `plain`: the job is a plain SCAN (no per-key command) whose batches become items by
    the function given; then, shards at once and no --rate, one thread multiplexes them
    (multiplex.py) instead of the worker threads. Counts finished shards in
    stats.nodes_done; when every shard ran to its end, compares the slot map with the one
    from before (stats.slot_map_changed). Use with closing(): closing it stops the
    workers and waits for them."""
    stop = threading.Event()
    shards = plan(
        target, replicas=reach.replicas and not primaries_only, rate=reach.rate, stop=stop
    )
    stats.nodes = len(shards)
    stats.shards = [s.read for s in shards]
    before = slot_map(target)
    stats.parallel = choose_parallel(reach.parallel, shards)
    convert: Callable[[Any], Any] | None = None
    if plain is not None and reach.rate is None and stats.parallel > 1 and len(shards) > 1:
        from closeup_ops.ops.keyspace.multiplex import scan_at_once

        spec, convert = plain
        feed_gen = scan_at_once(shards, stats.parallel, spec.match, spec.count, spec.type)
    else:
        feed_gen = fan_out([_bind(job, s) for s in shards], stats.parallel, stop)
    with closing(feed_gen) as feed:
        for _, item in feed:
            if item is DONE:
                stats.nodes_done += 1
            else:
                yield item if convert is None else convert(item)
    if before is not None:
        after = slot_map(target)
        # A MOVED/ASK reply to a per-key command proves it even when the map looks the same.
        stats.slot_map_changed = (after is not None and after != before) or stats.moved > 0


def _bind(job: Callable[[Shard], Iterator[Any]], shard: Shard) -> Callable[[], Iterator[Any]]:
    return lambda: job(shard)


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
    reach: Reach = Reach(),
) -> Iterator[tuple[str, list[bytes], list[Any]]]:
    """(node, keys, per-key replies) for every matching key on every shard, cut at
    --limit; stats.scanned counts what was handed out. Use inside guard()."""

    def job(shard: Shard) -> Iterator[tuple[str, list[bytes], list[Any]]]:
        channel = shard.channel()
        try:
            for batch in scan_node(channel, spec.match, spec.count, spec.type, extras):
                yield batch.node, batch.keys, batch.replies
        finally:
            channel.close()

    with closing(drive(target, stats, reach, job)) as feed:
        for address, keys, replies in feed:
            if spec.limit is not None and stats.scanned + len(keys) > spec.limit:
                n = spec.limit - stats.scanned
                cols = len(replies) // len(keys)
                keys, replies = keys[:n], replies[: n * cols]
            yield address, keys, replies
            stats.scanned += len(keys)
            if progress:
                progress(stats)
            if spec.limit is not None and stats.scanned >= spec.limit:
                return


def iter_keys(
    target: RedisTarget,
    spec: ScanSpec,
    stats: ScanStats,
    *,
    ttl: bool = False,
    memory: bool = False,
    values: bool = False,
    reveal: bool = False,
    reach: Reach = Reach(),
) -> Iterator[KeyBatch]:
    """Matching keys in batches, with the per-key data asked for. Use inside guard()."""
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

    def job(shard: Shard) -> Iterator[KeyBatch]:
        channel = shard.channel()
        side = None
        if values:
            side = NodeChannel(channel.address, channel.client, channel.limiter, channel.readonly)
        try:
            for raw in scan_node(
                channel, spec.match, spec.count, spec.type, extras if want_extras else None
            ):
                batch, types = _split(raw.node, raw.keys, raw.replies, ttl, values, memory, stats)
                if side is not None:
                    from closeup_ops.ops.keyspace.values import fetch_values

                    batch.values = fetch_values(side, batch.keys, types, reveal)
                yield batch
        finally:
            channel.close()
            if side is not None:
                side.close()

    plain = None if want_extras or values else (spec, _plain_batch)
    with closing(drive(target, stats, reach, job, plain=plain)) as feed:
        for batch in feed:
            stats.scanned += len(batch.keys)
            last = spec.limit is not None and stats.listed + len(batch.keys) >= spec.limit
            if last:
                _trim(batch, spec.limit - stats.listed)
            yield batch
            # Counted once the caller is done with the batch (written it): a Ctrl-C in
            # the middle of writing a batch does not count it as listed.
            stats.listed += len(batch.keys)
            if last:
                return


def _plain_batch(raw: Batch) -> KeyBatch:
    return KeyBatch(raw.node, raw.keys)


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
    if has_error(replies):
        replies = unmoved(replies, stats)
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


def unmoved(replies: list[Any], stats: ScanStats) -> list[Any]:
    """MOVED/ASK replies (the key's slot moved away since SCAN saw it) become -2, as for a
    key gone; counted in stats.moved. Other errors stay."""
    moved = [isinstance(r, Exception) and str(r).startswith(("MOVED ", "ASK ")) for r in replies]
    if not any(moved):
        return replies
    stats.moved += sum(moved)
    return [-2 if m else r for r, m in zip(replies, moved, strict=True)]


def _ints(replies: list[Any], node: str) -> list[int]:
    if has_error(replies):
        raise _refusal(node, first_error(replies))
    return replies


def _memory(replies: list[Any], node: str, stats: ScanStats) -> list[int | None]:
    """MEMORY USAGE replies; a refusal (unknown command, NOPERM) becomes None, noted once."""
    if -2 in replies:  # moved away (see unmoved): no size
        replies = [None if r == -2 else r for r in replies]
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
