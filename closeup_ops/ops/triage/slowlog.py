"""The slow log of every node over the window, by command: count, total and worst time,
the namespaces of the keys involved and the sources that sent them. Arguments are never
kept: a command's key is reduced to its namespace (`user:` of `user:42`), and every other
argument (values, script bodies, patterns) is dropped on reading.

Where a command's key is comes from COMMAND INFO (first key position; the numkeys form of
EVAL/FCALL); without it no namespace is shown. LATENCY LATEST, when the engine allows it,
adds the latency monitor's events.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.keyspace.encode import display
from closeup_ops.ops.keyspace.summary import NO_NAMESPACE, namespace_of
from closeup_ops.ops.triage.parts import Unavailable, each_node, reason

ENTRIES = 128  # the default slowlog-max-len
NUMKEYS = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}


@dataclass
class SlowCommand:
    command: str
    count: int
    total_ms: float
    max_ms: float
    latest: str  # ISO time of the newest entry
    namespaces: list[tuple[str, int]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)  # client host (name)


@dataclass
class LatencyEvent:
    node: str
    event: str
    latest: str
    latest_ms: int
    max_ms: int


@dataclass
class SlowLog:
    since_s: int
    entries: int  # in the window, all nodes
    commands: list[SlowCommand]  # by total time
    unavailable: list[tuple[str, str]] = field(default_factory=list)  # (node, why)
    key_positions: str | None = None  # why namespaces are missing, when they are
    latency: list[LatencyEvent] = field(default_factory=list)
    latency_note: str | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _key_positions(client: Any, names: set[str]) -> dict[str, int]:
    """command -> index of its first key (0: none); refused -> Unavailable."""
    import redis

    out: dict[str, int] = {}
    try:
        info = client.execute_command("COMMAND", "INFO", *sorted(names))
    except redis.exceptions.ResponseError as exc:
        raise Unavailable(f"COMMAND INFO refused: {exc}") from None
    for name in names:
        entry = info.get(name) if isinstance(info, dict) else None
        out[name] = int(entry.get("first_key_pos", 0) or 0) if isinstance(entry, dict) else 0
    return out


def _key(args: list[bytes], name: str, positions: dict[str, int] | None) -> bytes | None:
    if positions is None:
        return None
    if name in NUMKEYS:
        try:
            return args[3] if len(args) > 3 and int(args[2]) > 0 else None
        except ValueError:
            return None
    pos = positions.get(name, 0)
    return args[pos] if 0 < pos < len(args) else None


def _host(addr: Any) -> str:
    text = _text(addr)
    return text.rsplit(":", 1)[0] if ":" in text else text or "?"


def collect_slowlog(
    nodes: list[tuple[str, Any]], since_s: int, now: float | None = None, top: int = 10
) -> SlowLog:
    now = now or time.time()
    entries: list[tuple[int, int, list[bytes], str, str]] = []  # ts, us, args, host, name
    unavailable: list[tuple[str, str]] = []
    some_client = None
    clients = dict(nodes)
    for address, raw in each_node(nodes, lambda c: c.execute_command("SLOWLOG", "GET", ENTRIES)):
        if isinstance(raw, Exception):
            unavailable.append((address, reason(raw)))
            continue
        some_client = some_client or clients[address]
        for e in raw or []:
            ts, us, args = int(e[1]), int(e[2]), list(e[3])
            if ts < now - since_s:
                continue
            host = _host(e[4]) if len(e) > 4 else "?"
            cname = _text(e[5]) if len(e) > 5 else ""
            # keep the command name and (below) the key; nothing else leaves this loop
            entries.append((ts, us, args, host, cname))
    if some_client is None:
        raise Unavailable("; ".join(f"{a}: {w}" for a, w in unavailable) or "no nodes")
    names = {_text(e[2][0]).lower() for e in entries if e[2]}
    positions: dict[str, int] | None = None
    note = None
    if names:
        try:
            positions = _key_positions(some_client, names)
        except Unavailable as exc:
            note = f"namespaces not shown: {exc}"
    groups: dict[str, dict[str, Any]] = {}
    for ts, us, args, host, cname in entries:
        if not args:
            continue
        name = _text(args[0]).lower()
        g = groups.setdefault(
            name, {"count": 0, "us": 0, "max": 0, "ts": 0, "ns": Counter(), "src": Counter()}
        )
        g["count"] += 1
        g["us"] += us
        g["max"] = max(g["max"], us)
        g["ts"] = max(g["ts"], ts)
        key = _key(args, name, positions)
        if key is not None:
            ns = namespace_of(key, b":", 1)
            g["ns"][NO_NAMESPACE if ns is None else display(ns) + ":"] += 1
        g["src"][f"{host} ({display(cname.encode())})" if cname else host] += 1
    commands = [
        SlowCommand(
            command=name.upper(),
            count=g["count"],
            total_ms=round(g["us"] / 1000, 3),
            max_ms=round(g["max"] / 1000, 3),
            latest=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(g["ts"])),
            namespaces=g["ns"].most_common(3),
            sources=g["src"].most_common(3),
        )
        for name, g in groups.items()
    ]
    commands.sort(key=lambda c: (-c.total_ms, -c.count, c.command))
    report = SlowLog(since_s, len(entries), commands[:top], unavailable, note)
    report.latency, report.latency_note = _latency(nodes)
    return report


def _latency(nodes: list[tuple[str, Any]]) -> tuple[list[LatencyEvent], str | None]:
    out, refused = [], []
    for address, raw in each_node(nodes, lambda c: c.execute_command("LATENCY", "LATEST")):
        if isinstance(raw, Exception):
            refused.append(f"{address}: {reason(raw)}")
            continue
        for e in raw or []:
            out.append(
                LatencyEvent(
                    address,
                    _text(e[0]),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(e[1]))),
                    int(e[2]),
                    int(e[3]),
                )
            )
    note = f"LATENCY unavailable: {'; '.join(refused)}" if refused else None
    return sorted(out, key=lambda e: -e.max_ms), note
