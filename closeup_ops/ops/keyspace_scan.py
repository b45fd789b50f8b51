"""SCAN one node with per-key commands pipelined behind it, over one raw connection.

Why raw: redis-py's pipeline packs and parses every command in Python (several µs each),
which for a million PTTL/MEMORY USAGE calls costs more than the server's work. Here a
batch of per-key commands is packed as one bytes object, sent with one write, and the
replies are parsed by hiredis (C) straight from the connection's socket. The connection
comes from the client's own pool, so TLS, AUTH/ACL, the client name and tunnels all apply.

The loop keeps two requests in flight: as soon as SCAN i+1 answers, SCAN i+2 and the
per-key commands for batch i+1 are sent, and batch i is handed to the caller while the
server works. Only SCAN is ever used to find keys (never KEYS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import hiredis

# A per-key command builder: keys -> (packed commands, number of replies).
Extras = Callable[[list[bytes]], tuple[bytes, int]]

READ_CHUNK = 1 << 18
_NO_DATA = object()  # what the reader answers when no complete reply is buffered


class ConnectionLost(Exception):
    """The node went away (closed, reset, timed out) in the middle of the work."""

    def __init__(self, address: str, reason: str):
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class ServerRefused(Exception):
    """SCAN itself answered with an error (bad TYPE on an old server, NOPERM, ...)."""

    def __init__(self, address: str, message: str):
        super().__init__(message)
        self.address = address
        self.message = message


def pack(*args: bytes | str | int) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def per_key(*words: str) -> Callable[[list[bytes]], bytes]:
    """A packer for `WORDS... key` sent once per key: returns keys -> packed bytes."""
    head = b"*%d\r\n" % (len(words) + 1) + b"".join(
        b"$%d\r\n%b\r\n" % (len(w), w.encode()) for w in words
    )
    # The command head plus the key's length header, for every short key length.
    heads = [head + b"$%d\r\n" % n for n in range(1024)]

    def build(keys: list[bytes]) -> bytes:
        out: list[bytes] = []
        add = out.extend
        try:
            for k in keys:
                add((heads[len(k)], k, b"\r\n"))
        except IndexError:  # a key of 1 KiB or more: the general form
            return b"".join([b"%b$%d\r\n%b\r\n" % (head, len(k), k) for k in keys])
        return b"".join(out)

    return build


class NodeChannel:
    """One connection to one node, borrowed from the client's pool for the run."""

    def __init__(self, address: str, client: Any):
        self.address = address
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        if self._conn._sock is None:  # redis-py connects in get_connection; be sure
            self._conn.connect()
        self._sock = self._conn._sock
        self._reader = hiredis.Reader(notEnoughData=_NO_DATA)
        self._buf = bytearray(READ_CHUNK)
        self._view = memoryview(self._buf)
        self.pending = 0  # replies sent for but not read yet
        self._taken: list[Any] = []  # replies read by an unfinished read()

    def send(self, payload: bytes, replies: int) -> None:
        if not replies:
            return
        try:
            self._sock.sendall(payload)
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(self.address, _reason(exc)) from None
        self.pending += replies

    def read(self, n: int) -> list[Any]:
        """The next n replies (error replies come back as hiredis.ReplyError objects).

        Replies taken before an interruption are kept for drain(), so that what the
        server already did (UNLINKs) can still be counted."""
        out = self._taken
        want = n + len(out)
        gets = self._reader.gets
        while True:
            # Drain the parsed replies in C; islice never takes one beyond the n asked
            # for. (A callable iterator ends for good at the sentinel: a new one each time.)
            out.extend(islice(iter(gets, _NO_DATA), want - len(out)))
            if len(out) >= want:
                break
            self._fill()
        self._taken = []
        self.pending -= n
        return out

    def drain(self, timeout: float = 2.0) -> list[Any]:
        """After an interruption: every reply still due, or as many as arrive in time."""
        got = self._taken
        self._taken = []
        try:
            self._sock.settimeout(timeout)
            while self.pending > 0:
                got.extend(self.read(1))
        except (ConnectionLost, OSError):
            pass
        return got

    def request(self, payload: bytes, replies: int) -> list[Any]:
        self.send(payload, replies)
        return self.read(replies)

    def _fill(self) -> None:
        try:
            got = self._sock.recv_into(self._view, READ_CHUNK)
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(self.address, _reason(exc)) from None
        if not got:
            raise ConnectionLost(self.address, "the server closed the connection")
        self._reader.feed(self._view, 0, got)

    def close(self) -> None:
        """Give the connection back; a connection with replies still due is closed first."""
        if self.pending:
            self._conn.disconnect()
        try:
            self._pool.release(self._conn)
        except Exception:  # releasing is best effort
            pass


@dataclass
class Batch:
    node: str
    keys: list[bytes]
    replies: list[Any]  # the per-key commands' replies, in the order they were packed


def scan_args(cursor: bytes, pattern: bytes, count: int, type_: str | None) -> bytes:
    args: list[bytes | str | int] = ["SCAN", cursor, "MATCH", pattern, "COUNT", count]
    if type_:
        args += ["TYPE", type_]
    return pack(*args)


def scan_node(
    channel: NodeChannel,
    pattern: bytes,
    count: int,
    type_: str | None = None,
    extras: Extras | None = None,
) -> Iterator[Batch]:
    """Every key on the node matching pattern (and type), in batches, with the replies of
    `extras(keys)`. While a batch is with the caller, the next SCAN and its per-key
    commands are already on the server: the caller must not use the channel meanwhile."""
    first = _scan_reply(channel, channel.request(scan_args(b"0", pattern, count, type_), 1)[0])
    cursor, keys = first
    held: tuple[list[bytes], int] | None = None  # keys whose extras replies are in flight
    while True:
        more = cursor != b"0"
        payload, nreplies = extras(keys) if extras and keys else (b"", 0)
        if more:  # one write: the next SCAN first, so the server starts on it at once
            channel.send(scan_args(cursor, pattern, count, type_) + payload, 1 + nreplies)
        else:
            channel.send(payload, nreplies)
        if held is not None:
            yield Batch(channel.address, held[0], channel.read(held[1]))
        held = (keys, nreplies)
        if not more:
            break
        # Stream order: SCAN i+1, extras i, SCAN i+2, extras i+1, ...
        cursor, keys = _scan_reply(channel, channel.read(1)[0])
    if held is not None:
        yield Batch(channel.address, held[0], channel.read(held[1]))


def has_error(replies: list[Any]) -> bool:
    """Any error reply among these? (One C-level pass: this runs per batch of 1000.)"""
    return hiredis.ReplyError in set(map(type, replies))


def first_error(replies: list[Any]) -> str:
    return str(next(r for r in replies if isinstance(r, Exception)))


def _scan_reply(channel: NodeChannel, reply: Any) -> tuple[bytes, list[bytes]]:
    if isinstance(reply, Exception):
        raise ServerRefused(channel.address, str(reply))
    return reply[0], reply[1]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0]
