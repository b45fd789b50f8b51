"""Plain SCAN (no per-key command) of several shards at once in this one thread.

SCAN cannot be pipelined: each call waits for the cursor of the one before, so a node sits
idle from the moment it answers until the next SCAN reaches it. With one thread per shard
that turnaround includes waking the shard's thread and taking the GIL back from the others
(measured on 2 cores: ~10% more wall time and 2x the tool's CPU than one thread
multiplexing the same sockets). So a plain listing (`keys PATTERN`, with or without
--replicas, no --rate) waits on every socket at once with `selectors` and sends the next
SCAN the moment a reply is complete, before the batch goes to the caller.

Per-key commands, values, deletes and --rate keep the worker threads of shards.py: there
the tool's own CPU, not the turnaround, sets the pace.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from closeup_ops.ops.keyspace.scan import (
    Batch,
    ConnectionLost,
    NodeChannel,
    scan_args,
    scan_reply,
)
from closeup_ops.ops.keyspace.shards import DONE, Shard


def scan_at_once(
    shards: list[Shard],
    parallel: int,
    pattern: bytes,
    count: int,
    type_: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """(shard index, Batch) for every matching key of every shard, and (index, DONE) once
    a shard is finished; at most `parallel` shards at a time, each turned around as soon
    as its SCAN answers. A node that stays silent longer than its socket timeout is a
    ConnectionLost, as in the threaded path. Closing the generator closes every channel."""
    todo = deque(range(len(shards)))
    sel = selectors.DefaultSelector()
    # shard index -> (its channel, its socket timeout, when it last sent us bytes)
    active: dict[int, tuple[NodeChannel, float | None, float]] = {}

    def start(index: int) -> None:
        chan = shards[index].channel()
        try:
            chan.send(scan_args(b"0", pattern, count, type_), 1)
            sel.register(chan.sock, selectors.EVENT_READ, index)
        except BaseException:
            chan.close()
            raise
        active[index] = (chan, chan.sock.gettimeout(), time.monotonic())

    try:
        while todo or active:
            while todo and len(active) < parallel:
                start(todo.popleft())
            for index in _ready(sel, active):
                chan, timeout, _ = active[index]
                replies = chan.take()
                active[index] = (chan, timeout, time.monotonic())  # bytes came: a new timeout
                if not replies:
                    continue  # part of a reply: wait for the rest
                cursor, keys = scan_reply(chan, replies[0])
                finished = cursor == b"0"
                if finished:
                    sel.unregister(chan.sock)
                    del active[index]
                    chan.close()
                else:  # the node gets its next SCAN before the caller gets this batch
                    chan.send(scan_args(cursor, pattern, count, type_), 1)
                if keys:
                    yield index, Batch(chan.address, keys, [])
                if finished:
                    yield index, DONE
    finally:
        for chan, _, _ in active.values():
            chan.close()
        sel.close()


def _ready(
    sel: selectors.BaseSelector, active: dict[int, tuple[NodeChannel, float | None, float]]
) -> list[int]:
    """Shards with something to read: wait on every socket, at most until the nearest
    socket timeout, and raise ConnectionLost for a node past its own. (Over TLS nothing
    decrypted is left behind where select() cannot see it: one receive takes a whole TLS
    record, at most 16 KiB, into a 256 KiB buffer.)"""
    now = time.monotonic()
    deadlines = [(since + t, i) for i, (_, t, since) in active.items() if t is not None]
    wait = max(0.0, min(deadlines)[0] - now) if deadlines else None
    events = sel.select(wait)
    if events:
        return [key.data for key, _ in events]
    now = time.monotonic()
    for deadline, index in sorted(deadlines):
        if deadline <= now:
            raise ConnectionLost(active[index][0].address, "timed out")
    return []
