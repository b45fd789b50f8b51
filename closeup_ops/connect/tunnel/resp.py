"""RESP2/RESP3 framing for the tunnel's proxy: pure code, no sockets.

- `frame_end` finds where a complete frame ends without building Python objects;
- `parse` / `encode` turn a (small) frame into a tree and back, byte for byte for the parts
  left alone (scalars keep their raw payload);
- `CommandScanner` follows what a client sends and queues, per request, what kind of reply
  comes back (`NORMAL`, a topology answer, a transaction, ...);
- `ReplyScanner` walks the server's replies, pops that queue once per reply, passes bytes
  through unchanged (large bulk strings stream, never buffered whole) and hands topology
  answers and `-MOVED` / `-ASK` lines to a rewrite callback.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Union

CRLF = b"\r\n"
BLOB = frozenset(b"$=!")  # bulk string, verbatim string, blob error: a length, then bytes
AGGREGATE = frozenset(b"*~>")  # array, set, push: a count of elements
PAIRS = frozenset(b"%|")  # map, attribute: a count of key/value pairs
PUSH = ord(">")
ATTRIBUTE = ord("|")
ERROR_TYPES = frozenset(b"-!")

# What a reply answers (an int), or a tuple of kinds for an EXEC holding those replies.
NORMAL, SLOTS, SHARDS, NODES, MONITOR, SUBSCRIBE, RESET = range(7)
TOPOLOGY = frozenset((SLOTS, SHARDS, NODES))
Kind = Union[int, tuple]

_CLUSTER_KINDS = {
    b"SLOTS": SLOTS,
    b"SHARDS": SHARDS,
    b"NODES": NODES,
    b"REPLICAS": NODES,
    b"SLAVES": NODES,
}
_SUBSCRIBE = frozenset((b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE"))
_UNSUBSCRIBE = frozenset((b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"))
_NOT_QUEUED_IN_MULTI = frozenset((b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"))
_SHORT_ARG = 64  # arguments longer than this are never looked at (values, not verbs)


def needs_rewrite(kind: Kind) -> bool:
    if isinstance(kind, tuple):
        return any(k in TOPOLOGY for k in kind)
    return kind in TOPOLOGY


def frame_end(buf: bytes, pos: int = 0) -> int:
    """Offset just past the complete frame starting at `pos`, or -1 if more bytes are needed.

    Raises ValueError on bytes that are not RESP."""
    todo = 1
    n = len(buf)
    while todo:
        eol = buf.find(CRLF, pos)
        if eol < 0:
            return -1
        t = buf[pos]
        todo -= 1
        if t in BLOB:
            size = int(buf[pos + 1 : eol])
            pos = eol + 2
            if size >= 0:
                pos += size + 2
                if pos > n:
                    return -1
        elif t in AGGREGATE:
            todo += max(int(buf[pos + 1 : eol]), 0)
            pos = eol + 2
        elif t in PAIRS:
            todo += 2 * max(int(buf[pos + 1 : eol]), 0) + (t == ATTRIBUTE)
            pos = eol + 2
        else:
            pos = eol + 2
    return pos


# A parsed frame is (type byte, payload): bytes for scalars (the line or blob content), a
# list of frames for aggregates (maps flat: key, value, ...; an attribute's list ends with
# the value it annotates), None for a null blob or aggregate (`$-1`, `*-1`).
Frame = tuple[int, Any]


def parse(buf: bytes, pos: int = 0) -> tuple[Frame, int]:
    """One complete frame at `pos` -> (frame, end). Raises ValueError if incomplete/invalid."""
    eol = buf.find(CRLF, pos)
    if eol < 0:
        raise ValueError("incomplete frame")
    t = buf[pos]
    head = buf[pos + 1 : eol]
    pos = eol + 2
    if t in BLOB:
        size = int(head)
        if size < 0:
            return (t, None), pos
        if pos + size + 2 > len(buf):
            raise ValueError("incomplete frame")
        return (t, bytes(buf[pos : pos + size])), pos + size + 2
    if t in AGGREGATE or t in PAIRS:
        count = int(head)
        if count < 0:
            return (t, None), pos
        if t in PAIRS:
            count = 2 * count + (t == ATTRIBUTE)
        items = []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        return (t, items), pos
    return (t, bytes(head)), pos


def encode(frame: Frame) -> bytes:
    t, payload = frame
    tb = bytes((t,))
    if payload is None:
        return tb + b"-1\r\n"
    if isinstance(payload, list):
        count = len(payload)
        if t in PAIRS:
            count //= 2
        return b"%s%d\r\n" % (tb, count) + b"".join(encode(item) for item in payload)
    if t in BLOB:
        return b"%s%d\r\n%s\r\n" % (tb, len(payload), payload)
    return tb + payload + CRLF


class CommandScanner:
    """Follows the client's byte stream (RESP arrays and inline commands, split anywhere) and
    appends to `pending` the kind of each reply the server will send, in order."""

    def __init__(self, pending: deque) -> None:
        self.pending = pending
        self.protocol = 2
        self.multi: list | None = None  # kinds of the commands queued since MULTI
        self.reply_off = False  # CLIENT REPLY OFF: no replies until ON
        self.skip_next = False  # CLIENT REPLY SKIP: no reply for the next command
        self._hold = b""
        self._args: list[bytes] = []
        self._argc = 0
        self._left = 0  # arguments still to come in the current array
        self._skip = 0  # bytes of a long argument still to come

    def feed(self, data: bytes) -> None:
        if self._hold:
            data = self._hold + data
            self._hold = b""
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                continue
            if not self._left:
                if data[pos] != 42:  # not '*': an inline command, ends at \n
                    eol = data.find(b"\n", pos)
                    if eol < 0:
                        self._hold = data[pos:]
                        return
                    words = data[pos:eol].split()
                    pos = eol + 1
                    if words:
                        self._command(words, len(words))
                    continue
                eol = data.find(CRLF, pos)
                if eol < 0:
                    self._hold = data[pos:]
                    return
                count = int(data[pos + 1 : eol])
                pos = eol + 2
                if count > 0:  # `*0` / `*-1` are ignored by the server: no reply
                    self._left = self._argc = count
                    self._args = []
                continue
            eol = data.find(CRLF, pos)
            if eol < 0:
                self._hold = data[pos:]
                return
            size = int(data[pos + 1 : eol])
            if len(self._args) < 3 and size <= _SHORT_ARG:
                end = eol + 2 + size
                if end + 2 > n:
                    self._hold = data[pos:]
                    return
                self._args.append(data[eol + 2 : end])
                pos = end + 2
            else:
                self._skip = size + 2
                pos = eol + 2
            self._left -= 1
            if not self._left:  # the reply cannot come before the rest of a long argument
                self._command(self._args, self._argc)

    def _command(self, args: list[bytes], argc: int) -> None:
        name = args[0].upper()
        sub = args[1].upper() if len(args) > 1 else b""
        if name == b"CLIENT" and sub == b"REPLY" and len(args) > 2:
            mode = args[2].upper()
            if mode == b"ON":
                self.reply_off = False
                self.pending.append(NORMAL)
            elif mode == b"OFF":
                self.reply_off = True
            elif mode == b"SKIP" and not self.reply_off:
                self.skip_next = True
            return
        if self.reply_off:
            return
        if self.skip_next:
            self.skip_next = False
            return
        if self.multi is not None and name not in _NOT_QUEUED_IN_MULTI:
            self.multi.append(self._kind(name, sub, args, argc))
            self.pending.append(NORMAL)  # +QUEUED (or an error)
            return
        if name == b"EXEC" and self.multi is not None:
            kinds = tuple(self.multi)
            self.multi = None
            self.pending.append(kinds if needs_rewrite(kinds) else NORMAL)
            return
        if name == b"DISCARD":
            self.multi = None
        elif name == b"MULTI" and self.multi is None:
            self.multi = []
        if name in _UNSUBSCRIBE:
            if self.protocol == 2:  # one reply per channel (a push in RESP3)
                self.pending.extend([NORMAL] * max(1, argc - 1))
            return
        kind = self._kind(name, sub, args, argc)
        if kind is not None:
            self.pending.append(kind)

    def _kind(self, name: bytes, sub: bytes, args: list[bytes], argc: int) -> int | None:
        if name == b"CLUSTER":
            return _CLUSTER_KINDS.get(sub, NORMAL)
        if name in _SUBSCRIBE:
            # RESP3: confirmations and messages are all push frames, never paired. RESP2:
            # the first confirmation pairs, then the connection becomes a stream.
            return SUBSCRIBE if self.protocol == 2 and argc > 1 else (None if argc > 1 else 0)
        if name == b"MONITOR":
            return MONITOR
        if name == b"HELLO" and len(args) > 1 and sub in (b"2", b"3"):
            self.protocol = int(sub)  # optimistic: a refused HELLO is rare
        elif name == b"RESET":
            self.protocol, self.multi, self.reply_off, self.skip_next = 2, None, False, False
            return RESET
        return NORMAL


class ReplyScanner:
    """Walks the server's byte stream and returns what to send to the client.

    `rewrite(kind, frame)` gets each complete topology answer (buffered: they are small) and
    `redirect(line)` each `-MOVED`/`-ASK` error line; everything else is passed on as the
    very bytes received. Bulk payloads are skipped by length, so a large value streams."""

    def __init__(
        self,
        pending: deque,
        rewrite: Callable[[Kind, bytes], bytes],
        redirect: Callable[[bytes], bytes],
    ) -> None:
        self.pending = pending
        self.rewrite = rewrite
        self.redirect = redirect
        # Stream mode (MONITOR, RESP2 subscribed): replies cannot be paired with requests.
        # Only (P|S)(UN)SUBSCRIBE, PING, QUIT and RESET are accepted there, and MONITOR
        # accepts nothing, so no topology answer can arrive; -MOVED/-ASK are still
        # rewritten by content, and `+RESET` ends it.
        self.stream = False
        self._hold = b""
        self._stack: list[int] = []  # elements still due in each open aggregate
        self._skip = 0  # bytes of a bulk payload still to pass
        self._kind: Kind | None = None  # kind of the reply in progress (None: between replies)
        self._top = 0  # type byte of the reply in progress

    def feed(self, data: bytes) -> list[bytes]:
        if self._hold:
            data = self._hold + data
            self._hold = b""
        out: list[bytes] = []
        start = pos = 0
        n = len(data)
        stack = self._stack
        while pos < n:
            if self._skip:
                if n - pos < self._skip:
                    self._skip -= n - pos
                    pos = n
                    break
                pos += self._skip
                self._skip = 0
                self._element_done()
                continue
            if self._kind is None:  # a new reply starts here
                t = data[pos]
                if t == PUSH or self.stream:
                    self._kind = NORMAL
                else:
                    self._kind = self.pending.popleft() if self.pending else NORMAL
                self._top = t
            kind = self._kind
            if not stack and kind is not NORMAL and needs_rewrite(kind):
                end = frame_end(data, pos)
                if end < 0:
                    break  # held below, with the reply's kind kept
                out.append(data[start:pos])
                out.append(self.rewrite(kind, data[pos:end]))
                start = pos = end
                self._kind = None
                continue
            eol = data.find(CRLF, pos)
            if eol < 0:
                break
            t = data[pos]
            if t in BLOB:
                size = int(data[pos + 1 : eol])
                pos = eol + 2
                if size >= 0:
                    self._skip = size + 2
                    continue
            elif t in AGGREGATE or t in PAIRS:
                count = int(data[pos + 1 : eol])
                pos = eol + 2
                if t in PAIRS:
                    count = 2 * count + (t == ATTRIBUTE) if count > 0 else (t == ATTRIBUTE)
                if count > 0:
                    stack.append(count)
                    continue
            elif t == 45 and (data.startswith(b"-MOVED ", pos) or data.startswith(b"-ASK ", pos)):
                out.append(data[start:pos])
                out.append(self.redirect(data[pos : eol + 2]))
                start = pos = eol + 2
            else:
                if self.stream and not stack and data[pos:eol] == b"+RESET":
                    self._end_stream()
                pos = eol + 2
            self._element_done()
        if pos < n:
            self._hold = data[pos:]
        if start == 0 and pos == n and not out:
            return [data]
        out.append(data[start:pos])
        return out

    def _element_done(self) -> None:
        stack = self._stack
        while stack:
            stack[-1] -= 1
            if stack[-1]:
                return
            stack.pop()
        kind, self._kind = self._kind, None
        if (kind == MONITOR or kind == SUBSCRIBE) and self._top not in ERROR_TYPES:
            self.stream = True

    def _end_stream(self) -> None:
        self.stream = False
        while self.pending:  # requests sent in stream mode up to the RESET that ended it
            if self.pending.popleft() == RESET:
                break
