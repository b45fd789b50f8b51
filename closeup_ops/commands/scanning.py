"""Lines for people while keys and ttl scan a keyspace: throttled progress, and notes on
where shards were read (a --replicas fallback) and on a slot map that changed. Shared by
commands/keys.py and commands/ttl.py; the data they speak of comes from ops/keyspace."""

import sys
from typing import Any

from closeup_ops import output


class Notes:
    """Lines for people about where shards were read (a --replicas fallback) and about a
    slot map that changed; each said once, on stderr, also in --json mode."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def show(self, shards: Any) -> None:
        for shard in shards:
            if shard.note and shard.primary not in self.said:
                self.said.add(shard.primary)
                output.warn(f"shard {shard.primary}: {shard.note}")

    def end(self, shards: Any, slot_map_changed: bool | None) -> None:
        from closeup_ops.ops.keyspace.keys import SLOT_MAP_CHANGED

        self.show(shards)
        if slot_map_changed:
            output.warn(SLOT_MAP_CHANGED)


def progress_fn(update: Any, notes: Notes | None = None) -> Any:
    """Progress for people, throttled: a status line per batch would flood a log."""
    import time

    every = 0.2 if sys.stderr.isatty() else 5.0
    last = [time.monotonic()]

    def show(stats: Any) -> None:
        if notes is not None:
            notes.show(stats.shards)
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            update(stats.done())

    return show
