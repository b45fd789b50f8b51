"""RESP2/RESP3 framing for the tunnel's proxy: pure code, no sockets.

- `frame_end` finds where a complete frame ends without building Python objects;
- `parse` / `encode` turn a (small) frame into a tree and back, byte for byte for the parts
  left alone (scalars keep their raw payload);
- `first_word` reads the verb a pub/sub reply starts with;
- `Pending` is the queue of reply kinds a connection waits for (scan.py fills and pops it).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Union

CRLF = b"\r\n"
BLOB = frozenset(b"$=!")  # bulk string, verbatim string, blob error: a length, then bytes
AGGREGATE = frozenset(b"*~>")  # array, set, push: a count of elements
PAIRS = frozenset(b"%|")  # map, attribute: a count of key/value pairs
PUSH = ord(">")
ATTRIBUTE = ord("|")
ERROR_TYPES = frozenset(b"-!")

# What a reply answers (an int), or a tuple of kinds for an EXEC holding those replies.
# REAUTH: the reply to the proxy's own AUTH after a client's RESET (the client never sees it).
# ROLE / INFO: replies naming a primary's replicas or a replica's primary (replication.py).
# SUBSCRIBE: the replies to one (P|S)(UN)SUBSCRIBE (Pending.add says how many).
# HELLO2 / HELLO3: a HELLO asking for that protocol, which holds only if the reply is no error.
NORMAL, SLOTS, SHARDS, NODES, MONITOR, SUBSCRIBE, RESET, REAUTH, ROLE, INFO = range(10)
HELLO2, HELLO3 = 10, 11
TOPOLOGY = frozenset((SLOTS, SHARDS, NODES, ROLE, INFO))  # replies whose addresses are rewritten
Kind = Union[int, tuple]


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


def first_word(buf: bytes, pos: int) -> bytes | None:
    """The first element of the array or push at `pos` when it is a short bulk string (the
    verb of a pub/sub reply: `message`, `subscribe`, `pong`...), else b""; None while the
    bytes that decide it have not all arrived. Reads no further than that element."""
    n = len(buf)
    eol = buf.find(CRLF, pos, pos + 24)
    if eol < 0:
        return None if n - pos < 24 else b""
    p = eol + 2
    if p >= n:
        return None
    if buf[p] != 36:  # not '$'
        return b""
    eol = buf.find(CRLF, p, p + 6)
    if eol < 0:
        return None if n - p < 6 else b""
    size = int(buf[p + 1 : eol])
    if not 0 < size <= 16:
        return b""
    end = eol + 2 + size
    return buf[eol + 2 : end] if end <= n else None


class Pending:
    """The kinds of the replies a connection still waits for, in order, kept compact: the
    NORMAL replies are counts (a pipeline of 10,000 GETs is one number), only the special
    ones are entries: `specials` holds [NORMAL replies before it, kind], and for SUBSCRIBE
    a third item, the confirmations still due (0: as many as the channels held)."""

    __slots__ = ("specials", "tail")

    def __init__(self) -> None:
        self.specials: deque[list] = deque()
        self.tail = 0  # NORMAL replies after the last special one

    def add(self, kind: Kind, count: int = 1) -> None:
        """`count` replies of `kind`; for SUBSCRIBE, one command naming `count` channels
        (0: an UNSUBSCRIBE of all), answered by one confirmation per channel or one error."""
        if kind == NORMAL:
            self.tail += count
        elif kind == SUBSCRIBE:
            self.specials.append([self.tail, kind, count])
            self.tail = 0
        else:
            for _ in range(count):
                self.specials.append([self.tail, kind])
                self.tail = 0

    def pop(self) -> Kind:
        """The kind of the next reply (NORMAL when nothing is known to be due)."""
        if self.specials:
            head = self.specials[0]
            if head[0]:
                head[0] -= 1
                return NORMAL
            self.specials.popleft()
            return head[1]
        if self.tail:
            self.tail -= 1
        return NORMAL

    def clear(self) -> None:
        self.specials.clear()
        self.tail = 0

    def kinds(self) -> list:
        """Every kind due, in order (for tests and debugging)."""
        out: list = []
        for before, kind, *_ in self.specials:
            out += [NORMAL] * before + [kind]
        return out + [NORMAL] * self.tail

    def __len__(self) -> int:
        return sum(entry[0] + 1 for entry in self.specials) + self.tail
