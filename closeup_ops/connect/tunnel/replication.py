"""Replica discovery through the tunnel: ROLE and INFO's replication section (pure code).

Clients of a cluster-mode-disabled cache (Lettuce's MasterReplica, redis-py's and others'
replica lookups) ask the primary `ROLE` or `INFO replication` and connect to the replica
addresses found there. The shapes, as a redis-server sends them (RESP2 and RESP3 alike):
- ROLE on a primary: `*3 $master :offset *N` of `*3 $ip $port $offset` (port a bulk string);
- ROLE on a replica: `*5 $slave $master_ip :master_port $state :offset`;
- INFO: one bulk string (RESP3: a verbatim string `=` whose text starts `txt:`) with lines
  `slaveN:ip=X,port=P,state=...` on a primary, `master_host:X` / `master_port:P` on a
  replica. Only INFO with no section or with replication / all / everything / default
  carries those lines (`info_kind`).
Each address becomes the local endpoint of that node (`mapper`, as in rewrite.py: the
address this client reaches the proxy by, and the port of the node's listener). A reply
of another shape (an error, no such lines) is returned as is.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from closeup_ops.connect.tunnel.resp import INFO, NORMAL, Frame, encode, parse

# (host or None for "the node this connection is on", port, the node's IP or None) ->
# the node's local endpoint: (address, port)
Mapper = Callable[[str | None, int, str | None], tuple[bytes, int]]
_REPLICATION_SECTIONS = frozenset((b"REPLICATION", b"ALL", b"EVERYTHING", b"DEFAULT"))
MAX_INFO_WORDS = 16  # INFO sections looked at; more (never seen) counts as "maybe"
_SLAVE_LINE = re.compile(rb"^(slave\d+:ip=)([^,\r\n]*)(,port=)(\d+)", re.M)
_MASTER_HOST = re.compile(rb"^master_host:([^\r\n]*)", re.M)
_MASTER_PORT = re.compile(rb"^master_port:(\d+)", re.M)


def info_kind(args: list[bytes], argc: int) -> int:
    """INFO when the reply to `INFO <args[1:]>` holds the replication section, else NORMAL."""
    if argc == 1 or len(args) < argc:  # no section: the default ones; words not all seen
        return INFO
    return INFO if any(a.upper() in _REPLICATION_SECTIONS for a in args[1:]) else NORMAL


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def rewrite_role(frame: bytes, mapper: Mapper) -> bytes:
    try:
        node, end = parse(frame)
        if end != len(frame):
            return frame
        t, items = node
        while t == ord("|"):  # an attribute ahead of the value: look at the value
            t, items = items[-1]
        if not isinstance(items, list) or not items or not isinstance(items[0][1], bytes):
            return frame
        role = items[0][1].lower()
        if role == b"master" and len(items) > 2 and isinstance(items[2][1], list):
            for replica in items[2][1]:
                _make_local(replica[1], 0, 1, mapper)
        elif role in (b"slave", b"replica") and len(items) > 2:
            _make_local(items, 1, 2, mapper)
        else:
            return frame
    except (ValueError, IndexError, TypeError, AttributeError):
        return frame
    return encode(node)


def _make_local(items: list[Frame], host_at: int, port_at: int, mapper: Mapper) -> None:
    """items[host_at] / items[port_at]: an address, made local (types kept)."""
    host, port = items[host_at][1], items[port_at][1]
    if not isinstance(host, bytes) or not host or host == b"?" or not port.isdigit():
        return
    if int(port) == 0:
        return
    here, local = mapper(_text(host), int(port), None)
    items[host_at] = (items[host_at][0], here)
    items[port_at] = (items[port_at][0], b"%d" % local)


def rewrite_info(frame: bytes, mapper: Mapper) -> bytes:
    t = frame[:1]
    if t != b"$" and t != b"=":
        return frame  # an error, a null
    eol = frame.find(b"\r\n")
    try:
        size = int(frame[1:eol])
    except ValueError:
        return frame
    start = eol + 2
    if size < 0 or start + size + 2 != len(frame):
        return frame
    text = frame[start : start + size]
    new = rewrite_info_text(text, mapper)
    if new is text:
        return frame
    return b"%s%d\r\n%s\r\n" % (t, len(new), new)


def rewrite_info_text(text: bytes, mapper: Mapper) -> bytes:
    """INFO's text (a verbatim string's `txt:` prefix included): the same object if it names
    no other node."""
    if b"\nslave" not in text and b"\nmaster_host:" not in text:
        return text

    def slave(m: re.Match) -> bytes:
        if not m[2] or not int(m[4]):
            return m[0]
        here, local = mapper(_text(m[2]), int(m[4]), None)
        return b"%s%s%s%d" % (m[1], here, m[3], local)

    new = _SLAVE_LINE.sub(slave, text)
    host, port = _MASTER_HOST.search(new), _MASTER_PORT.search(new)
    if host and port and host[1] not in (b"", b"?") and int(port[1]):
        here, local = mapper(_text(host[1]), int(port[1]), None)
        lines = {host.span(): b"master_host:" + here, port.span(): b"master_port:%d" % local}
        for (start, end), line in sorted(lines.items(), reverse=True):  # later one first
            new = new[:start] + line + new[end:]
    return new if new != text else text


__all__ = ["INFO", "NORMAL", "info_kind", "rewrite_info", "rewrite_role"]
