"""What a keyspace run is asked to do and what it has done: the pattern and SCAN options
(ScanSpec), how the shards are worked (Reach), where each shard was read (ShardRead), and
the running tally that progress lines, faults and Ctrl-C report (ScanStats). Checked
before anything connects (exit 2). Plain data: importing this connects nothing and loads
no client library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from closeup_ops.errors import UsageError

# SCAN TYPE values the server knows (modules add their own names, e.g. ReJSON-RL).
TYPES = ("string", "list", "set", "zset", "hash", "stream", "ReJSON-RL")
DEFAULT_COUNT = 1000
DEFAULT_PARALLEL = 8  # a bastion's few cores: threads mostly wait on their nodes
MAX_PARALLEL = 64


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


@dataclass(frozen=True)
class Reach:
    """How the shards are worked: at once (`parallel` at a time), from replicas, capped."""

    parallel: int | None = None  # None: choose_parallel's default (see shards.py)
    replicas: bool = False
    rate: int | None = None  # commands per second per node


def check_reach(reach: Reach) -> Reach:
    if reach.parallel is not None and not 1 <= reach.parallel <= MAX_PARALLEL:
        raise UsageError(
            f"--parallel {reach.parallel} is not valid",
            f"use 1 (one shard after the other) to {MAX_PARALLEL} (default {DEFAULT_PARALLEL}, "
            "at most the cores here when the nodes run on this machine)",
        )
    return reach


@dataclass
class ShardRead:
    """One shard as the JSON reports it: its primary and the node it was read from."""

    primary: str
    read_from: str
    role: str  # "primary" or "replica"
    note: str | None = None  # why the primary was read although --replicas asked otherwise


@dataclass
class ScanStats:
    """What has been done so far (also what a fault or Ctrl-C reports)."""

    nodes: int = 0
    nodes_done: int = 0
    scanned: int = 0
    listed: int = 0
    deleted: int | None = None
    memory_refused: str | None = None
    shards: list[ShardRead] = field(default_factory=list)
    slot_map_changed: bool | None = None  # None: standalone, or not compared (cut short)
    moved: int = 0  # keys whose slot moved between SCAN and the per-key command
    parallel: int = 0  # shards worked at once (choose_parallel)

    @property
    def unit(self) -> str:
        replica = any(s.role == "replica" for s in self.shards)
        return "shards" if replica else "primaries"

    def done(self) -> str:
        text = f"scanned {self.scanned} keys on {self.nodes_done} of {self.nodes} {self.unit}"
        if self.listed:
            text += f", listed {self.listed}"
        if self.deleted is not None:
            text += f", deleted {self.deleted}"
        return text
