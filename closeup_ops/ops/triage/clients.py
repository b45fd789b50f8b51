"""CLIENT LIST of every node, grouped by source host and client name, with the idle and
output-buffer outliers.

Only these fields are read from a CLIENT LIST line: addr (the host; the port is dropped),
name, user, age, idle, flags, omem, cmd (the last command's name: CLIENT LIST carries no
arguments). CLIENT LIST never carries passwords; the ACL user name is shown because it
says which application a connection belongs to, and it is an identity, not a credential.
closeup-ops's own connections (client name `closeup-ops`) are left out.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.keyspace.encode import display
from closeup_ops.ops.triage.parts import Unavailable, each_node, reason

OWN_NAME = "closeup-ops"
IDLE_S = 3600  # idle for an hour or more: a leaked or forgotten connection
OMEM_BYTES = 1 << 20  # 1 MiB waiting in a client's output buffer: a slow reader
KEEP = {"addr", "name", "user", "age", "idle", "flags", "omem", "cmd"}


@dataclass
class SourceGroup:
    source: str  # host
    name: str  # client name ("" when unset)
    user: str
    connections: int
    nodes: int
    idle_median_s: float
    idle_max_s: int
    omem_bytes: int
    blocked: int


@dataclass
class BufferOutlier:
    node: str
    source: str
    name: str
    omem_bytes: int
    cmd: str


@dataclass
class Clients:
    total: int  # connections seen, closeup-ops's own left out
    own: int
    groups: list[SourceGroup]  # most connections first
    idle_over: int  # connections idle >= IDLE_S
    idle_sources: list[tuple[str, int]]
    buffers: list[BufferOutlier]
    per_node: dict[str, int] = field(default_factory=dict)
    unavailable: list[tuple[str, str]] = field(default_factory=list)


def parse_client_list(raw: Any) -> list[dict[str, str]]:
    """The KEEP fields of each CLIENT LIST line (values are space-free by Redis's rules)."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    out = []
    for line in text.splitlines():
        fields = {}
        for word in line.split(" "):
            key, sep, value = word.partition("=")
            if sep and key in KEEP:
                fields[key] = value
        if fields:
            out.append(fields)
    return out


def _int(fields: dict[str, str], key: str) -> int:
    try:
        return int(fields.get(key, 0))
    except ValueError:
        return 0


def collect_clients(nodes: list[tuple[str, Any]], top: int = 10) -> Clients:
    rows: list[tuple[str, dict[str, str]]] = []
    unavailable = []
    for address, raw in each_node(nodes, lambda c: c.execute_command("CLIENT", "LIST")):
        if isinstance(raw, Exception):
            unavailable.append((address, reason(raw)))
            continue
        rows += [(address, f) for f in parse_client_list(raw)]
    if not rows and unavailable:
        raise Unavailable("; ".join(f"{a}: {w}" for a, w in unavailable))
    own = sum(1 for _, f in rows if f.get("name") == OWN_NAME)
    rows = [(a, f) for a, f in rows if f.get("name") != OWN_NAME]
    groups: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "nodes": set(), "idle": [], "omem": 0, "blocked": 0}
    )
    per_node: dict[str, int] = defaultdict(int)
    idle_sources: dict[str, int] = defaultdict(int)
    buffers = []
    for node, f in rows:
        host = f.get("addr", "?").rsplit(":", 1)[0]
        name = display(f.get("name", "").encode())
        g = groups[(host, name, display(f.get("user", "").encode()))]
        g["n"] += 1
        g["nodes"].add(node)
        idle = _int(f, "idle")
        g["idle"].append(idle)
        omem = _int(f, "omem")
        g["omem"] += omem
        g["blocked"] += "b" in f.get("flags", "")
        per_node[node] += 1
        if idle >= IDLE_S:
            idle_sources[host] += 1
        if omem >= OMEM_BYTES:
            buffers.append(BufferOutlier(node, host, name, omem, f.get("cmd", "?")))
    out = [
        SourceGroup(
            source=host,
            name=name,
            user=user,
            connections=g["n"],
            nodes=len(g["nodes"]),
            idle_median_s=float(statistics.median(g["idle"])),
            idle_max_s=max(g["idle"]),
            omem_bytes=g["omem"],
            blocked=g["blocked"],
        )
        for (host, name, user), g in groups.items()
    ]
    out.sort(key=lambda g: (-g.connections, g.source, g.name))
    buffers.sort(key=lambda b: -b.omem_bytes)
    return Clients(
        total=len(rows),
        own=own,
        groups=out[:top],
        idle_over=sum(idle_sources.values()),
        idle_sources=sorted(idle_sources.items(), key=lambda kv: -kv[1])[:top],
        buffers=buffers[:top],
        per_node=dict(per_node),
        unavailable=unavailable,
    )
