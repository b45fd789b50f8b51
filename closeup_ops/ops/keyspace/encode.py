"""Keys and values (bytes) made safe for NDJSON and for a terminal, a batch at a time.

`output.ndjson` calls json.dumps once per object; over a million keys that is most of the
run, so key batches are encoded here as bytes: a batch whose keys need no JSON escaping
(the usual `otp:123`) is joined without looking at each key; any other batch goes key by
key through json.dumps. A key that is not valid UTF-8 is shown with backslash escapes and
carried exactly as `key_base64`, so nothing is lost.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

# Printable ASCII: what a terminal may get raw. Minus `"` and `\`: what JSON may get raw.
# A batch is checked by deleting these bytes (bytes.translate, C, ~4x faster than a regex
# search): whatever is left needs escaping (or may not be UTF-8).
_TEXT_SAFE = bytes(range(0x20, 0x7F))
_JSON_SAFE = _TEXT_SAFE.replace(b'"', b"").replace(b"\\", b"")

MASK = "******"


def key_text(key: bytes) -> str:
    """A key as text: UTF-8 when it is, else with \\x escapes."""
    return key.decode("utf-8", "backslashreplace")


def display(key: bytes) -> str:
    """A key for a terminal: control characters escaped, never raw."""
    text = key_text(key)
    if not any(ch < " " or ch == "\x7f" for ch in text):
        return text
    return "".join(repr(ch)[1:-1] if (ch < " " or ch == "\x7f") else ch for ch in text)


def key_fields(key: bytes) -> dict[str, str]:
    """{"key": ...} and, when the key is not UTF-8, its exact bytes as key_base64."""
    try:
        return {"key": key.decode("utf-8")}
    except UnicodeDecodeError:
        return {"key": key_text(key), "key_base64": base64.b64encode(key).decode()}


def _key_json(key: bytes) -> bytes:
    fields = key_fields(key)
    text = '"key":' + json.dumps(fields["key"])
    if "key_base64" in fields:
        text += ',"key_base64":"' + fields["key_base64"] + '"'
    return text.encode()


def _num(value: int | None) -> bytes:
    return b"null" if value is None else b"%d" % value


def ndjson_batch(
    keys: Sequence[bytes],
    ttl_ms: Sequence[int] | None = None,
    memory: Sequence[int | None] | None = None,
    values: Sequence[dict[str, Any]] | None = None,
) -> bytes:
    """One JSON object per key, one per line: {"key":..., "ttl_ms":..., "memory":...}."""
    if not keys:
        return b""
    if not b"".join(keys).translate(None, _JSON_SAFE):
        if ttl_ms is None and memory is None and values is None:
            return b'{"key":"' + b'"}\n{"key":"'.join(keys) + b'"}\n'
        if memory is None and values is None:
            return b"".join(
                [b'{"key":"%b","ttl_ms":%d}\n' % kt for kt in zip(keys, ttl_ms, strict=False)]
            )
        heads = [b'{"key":"%b"' % k for k in keys]
    else:
        heads = [b"{" + _key_json(k) for k in keys]
    columns: list[list[bytes]] = [heads]
    if ttl_ms is not None:
        columns.append([b',"ttl_ms":%d' % t for t in ttl_ms])
    if memory is not None:
        columns.append([b',"memory":' + _num(m) for m in memory])
    if values is not None:
        columns.append([b"," + json.dumps(v, separators=(",", ":"))[1:-1].encode() for v in values])
    return b"".join([b"".join(row) + b"}\n" for row in zip(*columns, strict=False)])


def text_keys(keys: Sequence[bytes]) -> bytes:
    """One key per line, like `redis-cli --scan`, with unsafe keys escaped."""
    if not keys:
        return b""
    joined = b"\n".join(keys)
    if not joined.translate(None, _TEXT_SAFE):
        return joined + b"\n"
    return "".join(display(k) + "\n" for k in keys).encode()


def ttl_text(ms: int | None) -> str:
    """A PTTL as people read it; -1 and -2 kept as Redis gives them, with a word."""
    if ms is None:
        return "-"
    if ms == -1:
        return "-1 (no expiry)"
    if ms == -2:
        return "-2 (missing)"
    return f"{ttl_seconds(ms)}s"


def ttl_seconds(ms: int) -> int:
    """PTTL -> what TTL would answer (Redis rounds to the nearest second)."""
    return ms if ms < 0 else (ms + 500) // 1000
