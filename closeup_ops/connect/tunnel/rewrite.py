"""Rewrite every node address a cluster hands out to the local endpoint of that node
(ROLE and INFO's replication lines: replication.py).

Pure functions over RESP frames (see resp.py). `mapper(host, port, ip)` returns the local
endpoint for a node, (address, port), the address being the one this client reaches the
proxy by (the proxy creates the listener on first sight, before the reply goes out);
`host` None means "the host this connection is on" (an empty or `?` endpoint); `ip` is the
node's IP when a hostname is preferred, so both addresses can share one listener. Where a
node gives both a hostname and an IP the hostname wins: TLS is verified against it.
"""

from __future__ import annotations

from closeup_ops.connect.tunnel.replication import Mapper, rewrite_info, rewrite_role
from closeup_ops.connect.tunnel.resp import (
    INFO,
    NODES,
    ROLE,
    SHARDS,
    SLOTS,
    TOPOLOGY,
    Frame,
    Kind,
    encode,
    frame_end,
    parse,
)

_ADDRESS_KEYS = (b"ip", b"endpoint", b"hostname")
_INT = ord(":")


def rewrite_reply(kind: Kind, frame: bytes, mapper: Mapper, tls: bool = False) -> bytes:
    """The reply `frame` to a command of `kind`, every node address made local (`tls`: the
    upstream connection is TLS, so CLUSTER SHARDS' `tls-port` is the port to reach).

    A reply of another shape (an error, a server that answers differently) is returned as
    is. OSError from the mapper (no listener could be made) propagates."""
    if isinstance(kind, tuple):
        return _rewrite_exec(kind, frame, mapper, tls)
    if kind == ROLE:
        return rewrite_role(frame, mapper)
    if kind == INFO:
        return rewrite_info(frame, mapper)
    try:
        node, end = parse(frame)
    except ValueError:
        return frame
    if end != len(frame) or node[1] is None or (isinstance(node[1], bytes) and kind != NODES):
        return frame
    try:
        if kind == SLOTS:
            new = _slots(node, mapper)
        elif kind == SHARDS:
            new = _shards(node, mapper, tls)
        else:
            new = _nodes(node, mapper)
    except (ValueError, IndexError, TypeError, AttributeError):
        return frame
    return encode(new)


def _rewrite_exec(kinds: tuple, frame: bytes, mapper: Mapper, tls: bool) -> bytes:
    """EXEC's array holds one reply per queued command: rewrite those that need it."""
    if frame[:1] != b"*":
        return frame  # -EXECABORT, a null (WATCH), ...
    eol = frame.find(b"\r\n")
    count = int(frame[1:eol])
    if count != len(kinds):
        return frame
    parts = [frame[: eol + 2]]
    pos = eol + 2
    for kind in kinds:
        end = frame_end(frame, pos)
        element = frame[pos:end]
        parts.append(rewrite_reply(kind, element, mapper, tls) if kind in TOPOLOGY else element)
        pos = end
    return b"".join(parts)


def rewrite_redirect(line: bytes, mapper: Mapper) -> bytes:
    """`-MOVED 3999 host:port\\r\\n` / `-ASK ...` -> the same naming the local endpoint.
    An empty host (`-MOVED 3999 :6380`) is the host this connection is on."""
    words = line[1:].rstrip(b"\r\n").split(b" ")
    if len(words) != 3:
        return line
    host, _, port = words[2].rpartition(b":")
    if not port.isdigit():
        return line
    here, local = mapper(_text(host) or None, int(port), None)
    return b"-%s %s %s:%d\r\n" % (words[0], words[1], here, local)


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _pairs(frame: Frame) -> list[Frame]:
    """Key/value list of a map (RESP3) or a flat key/value array (RESP2)."""
    t, items = frame
    if t == ord("|"):  # an attribute ahead of the value: look at the value
        return _pairs(items[-1])
    if items is None or not isinstance(items, list):
        raise TypeError("not a key/value frame")
    return items


def _items(frame: Frame) -> list[Frame]:
    t, items = frame
    if t == ord("|"):
        return _items(items[-1])
    if not isinstance(items, list):
        raise TypeError("not an aggregate")
    return items


def _set_local(items: list[Frame], index: int, here: bytes) -> None:
    t, _ = items[index]
    items[index] = (t if t in b"$+" else ord("$"), here)


def _slots(frame: Frame, mapper: Mapper) -> Frame:
    """CLUSTER SLOTS: [[start, end, [host, port, id, {hostname|ip: ...}], replica...], ...]."""
    for slot_range in _items(frame):
        for node in _items(slot_range)[2:]:
            fields = _items(node)
            endpoint = _text(fields[0][1])
            port = int(fields[1][1])
            meta = {}
            if len(fields) > 3:
                kv = _pairs(fields[3])
                meta = {kv[i][1]: i + 1 for i in range(0, len(kv) - 1, 2)}
            hostname = _text(kv[meta[b"hostname"]][1]) if b"hostname" in meta else ""
            ip = _text(kv[meta[b"ip"]][1]) if b"ip" in meta else None
            if hostname:
                host, ip = hostname, ip or (endpoint if endpoint not in ("", "?") else None)
            else:
                host = endpoint if endpoint not in ("", "?") else None
            here, local = mapper(host, port, ip if ip != host else None)
            _set_local(fields, 0, here)
            fields[1] = (_INT, b"%d" % local)
            for key in (b"hostname", b"ip"):
                if key in meta:
                    _set_local(kv, meta[key], here)
    return frame


def _shards(frame: Frame, mapper: Mapper, tls: bool) -> Frame:
    """CLUSTER SHARDS: [{slots: [...], nodes: [{id, port, tls-port, ip, endpoint, hostname,
    role, ...}, ...]}, ...] as RESP3 maps or RESP2 flat arrays."""
    for shard in _items(frame):
        kv = _pairs(shard)
        for i in range(0, len(kv) - 1, 2):
            if kv[i][1] != b"nodes":
                continue
            for node in _items(kv[i + 1]):
                _shard_node(_pairs(node), mapper, tls)
    return frame


def _shard_node(kv: list[Frame], mapper: Mapper, tls: bool) -> None:
    where = {kv[i][1]: i + 1 for i in range(0, len(kv) - 1, 2)}

    def value(key: bytes) -> str:
        return _text(kv[where[key]][1]) if key in where else ""

    host = value(b"hostname") or value(b"endpoint")
    if host in ("", "?"):
        host = value(b"ip") or ""
    ip = value(b"ip") or None
    port_key = b"tls-port" if tls and b"tls-port" in where else b"port"
    if port_key not in where:
        port_key = b"tls-port"
    port = int(kv[where[port_key]][1])
    if port == 0:
        return  # a node without an address (failed, handshaking)
    here, local = mapper(host or None, port, ip if ip != host else None)
    for key in _ADDRESS_KEYS:
        if key in where and value(key):
            _set_local(kv, where[key], here)
    for key in (b"port", b"tls-port"):
        if key in where:
            kv[where[key]] = (_INT, b"%d" % local)
    if b"port" not in where:  # TLS-only node: the local side is plain TCP, its port is `port`
        kv[where[b"tls-port"] - 1] = (kv[where[b"tls-port"] - 1][0], b"port")


def rewrite_nodes_text(text: bytes, mapper: Mapper) -> bytes:
    """CLUSTER NODES / REPLICAS lines `id ip:port@cport[,hostname[,aux=...]] flags ...`."""
    lines = text.split(b"\n")
    for n, line in enumerate(lines):
        fields = line.split(b" ", 2)
        if len(fields) < 3:
            continue
        address, *extra = fields[1].split(b",")
        ipport, at, cport = address.partition(b"@")
        ip, _, port = ipport.rpartition(b":")
        if not port.isdigit() or port == b"0":
            continue  # no address known for this node
        hostname = _text(extra[0]) if extra and b"=" not in extra[0] else ""
        host = hostname or _text(ip) or None
        here, local = mapper(host, int(port), _text(ip) if hostname and ip else None)
        if hostname:
            extra[0] = b""
        new = b",".join([b"%s:%d%s%s" % (here, local, at, cport), *extra])
        lines[n] = b" ".join((fields[0], new, fields[2]))
    return b"\n".join(lines)


def _nodes(frame: Frame, mapper: Mapper) -> Frame:
    """CLUSTER NODES: one text; CLUSTER REPLICAS / SLAVES: an array of such lines."""
    t, text = frame
    if isinstance(text, list):
        return (t, [_nodes(line, mapper) for line in text])
    if t == ord("="):  # RESP3 verbatim string: "txt:" then the text
        return (t, text[:4] + rewrite_nodes_text(text[4:], mapper))
    if t not in b"$+":
        raise TypeError("not a text reply")
    return (t, rewrite_nodes_text(text, mapper))
