"""`keys --values`: each key's type and length, and its value only with --reveal.

Masked by default: OTPs are secrets and listings end up in incident channels. Masked
values never leave the server (STRLEN, LLEN, ... instead of GET). Revealed collections
show their first PREVIEW items.
"""

from __future__ import annotations

import base64
from typing import Any

from closeup_ops.ops.keyspace.encode import MASK, key_text
from closeup_ops.ops.keyspace.scan import NodeChannel, pack

PREVIEW = 10

LENGTH = {
    "string": "STRLEN",
    "list": "LLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "hash": "HLEN",
    "stream": "XLEN",
}


def _reveal_command(type_: str, key: bytes) -> bytes | None:
    last = PREVIEW - 1
    return {
        "string": lambda: pack("GET", key),
        "list": lambda: pack("LRANGE", key, 0, last),
        "set": lambda: pack("SSCAN", key, 0, "COUNT", PREVIEW),
        "zset": lambda: pack("ZRANGE", key, 0, last, "WITHSCORES"),
        "hash": lambda: pack("HSCAN", key, 0, "COUNT", PREVIEW),
        "stream": lambda: pack("XRANGE", key, "-", "+", "COUNT", PREVIEW),
    }.get(type_, lambda: None)()


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode(), "text": key_text(value)}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _preview(type_: str, reply: Any) -> Any:
    if isinstance(reply, Exception):
        return None
    if type_ in ("set", "hash"):  # [cursor, items]
        reply = reply[1]
    if type_ in ("hash", "zset"):
        pairs = [reply[i : i + 2] for i in range(0, len(reply), 2)]
        return _text(pairs[:PREVIEW])
    if type_ == "stream":
        return _text([[entry_id, fields] for entry_id, fields in reply[:PREVIEW]])
    if isinstance(reply, list):
        return _text(reply[:PREVIEW])
    return _text(reply)


def fetch_values(
    channel: NodeChannel, keys: list[bytes], types: list[Any], reveal: bool
) -> list[dict[str, Any]]:
    """{"type", "length", "value"} per key, from one pipelined round trip."""
    names = [t.decode() if isinstance(t, bytes) else "?" for t in types]
    commands: list[bytes] = []
    plan: list[tuple[bool, bool]] = []  # (has length reply, has value reply) per key
    for key, type_ in zip(keys, names, strict=False):
        length = LENGTH.get(type_)
        value = _reveal_command(type_, key) if reveal else None
        if length:
            commands.append(pack(length, key))
        if value:
            commands.append(value)
        plan.append((bool(length), bool(value)))
    replies = iter(channel.request(b"".join(commands), len(commands)))
    out = []
    for type_, (has_length, has_value) in zip(names, plan, strict=False):
        entry: dict[str, Any] = {"type": type_ if type_ != "none" else "missing"}
        length = next(replies) if has_length else None
        entry["length"] = None if isinstance(length, Exception) else length
        if type_ == "none":
            entry["value"] = None
        elif reveal:
            entry["value"] = _preview(type_, next(replies)) if has_value else None
        else:
            entry["value"] = MASK
        out.append(entry)
    return out
