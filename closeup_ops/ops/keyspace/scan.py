"""SCAN one node with per-key commands pipelined behind it, over raw connections.

Why raw: redis-py's pipeline packs and parses every command in Python (several µs each),
which for a million PTTL/MEMORY USAGE calls costs more than the server's work. Here a
batch of per-key commands is packed as one bytes object, sent with one write, and the
replies are parsed by hiredis (C) straight from the connection's socket. Connections come
from the client's own pool, so TLS, AUTH/ACL, the client name and tunnels all apply.

The server is the bottleneck (SCAN alone costs it ~1.3 µs a key), so the loop's job is
to never let it wait for us: SCAN is turned around on its own connection as soon as it
answers, and per-key commands go down a second connection, several batches deep (see
scan_node). Only SCAN is ever used to find keys (never KEYS).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice, repeat
from typing import Any

import hiredis

# A per-key command builder: keys -> (packed commands, number of replies).
Extras = Callable[[list[bytes]], tuple[bytes, int]]

READ_CHUNK = 1 << 18
DEPTH = 6  # batches of per-key commands in flight per node
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
    return per_key_each([words])


def per_key_each(commands: list[tuple[str, ...]]) -> Callable[[list[bytes]], bytes]:
    """A packer sending every one of `commands` (each `WORDS... key`) for each key in
    turn: replies come back key by key, e.g. PTTL k1, MEMORY USAGE k1, PTTL k2, ..."""
    heads = []
    for words in commands:
        head = b"*%d\r\n" % (len(words) + 1) + b"".join(
            b"$%d\r\n%b\r\n" % (len(w), w.encode()) for w in words
        )
        heads.append(head)
    # Each command's head plus the key's length header, for every short key length.
    table = [[h + b"$%d\r\n" % n for n in range(1024)] for h in heads]
    crlf = b"\r\n"

    def general(keys: list[bytes]) -> bytes:
        return b"".join([b"%b$%d\r\n%b\r\n" % (h, len(k), k) for k in keys for h in heads])

    # The payload is joined from C-level iterators (map/zip/chain): no Python bytecode per
    # key. A key of 1 KiB or more has no table entry (IndexError): the general path.
    def build(keys: list[bytes]) -> bytes:
        lens = list(map(len, keys))
        columns: list[Any] = []
        for row in table:
            columns += [map(row.__getitem__, lens), keys, repeat(crlf)]
        try:
            return b"".join(chain.from_iterable(zip(*columns, strict=False)))  # repeat: endless
        except IndexError:
            return general(keys)

    return build


class NodeChannel:
    """One connection to one node, borrowed from the client's pool for the run."""

    def __init__(
        self, address: str, client: Any, limiter: Any = None, readonly: bool = False
    ) -> None:
        self.address = address
        self.client = client
        self.limiter = limiter  # a rate.RateLimiter shared by the node's channels, or None
        self.readonly = readonly
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
        self._closed = False
        if readonly:  # a cluster replica serves reads of its slots only after READONLY
            (reply,) = self.request(pack("READONLY"), 1)
            if isinstance(reply, Exception):
                self.close()
                raise ServerRefused(address, str(reply))

    def send(self, payload: bytes, replies: int) -> None:
        if not replies:
            return
        if self.limiter is not None:
            self.limiter.take(replies)
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

    @property
    def sock(self) -> Any:
        return self._sock

    def take(self) -> list[Any]:
        """Once the socket looks readable (multiplex.py): one receive, then every reply
        complete so far, maybe none."""
        self._fill()
        out = list(iter(self._reader.gets, _NO_DATA))
        self.pending -= len(out)
        return out

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
        if self._closed:
            return
        self._closed = True
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
    worker: NodeChannel | None = None,
    depth: int = DEPTH,
) -> Iterator[Batch]:
    """Every key on the node matching pattern (and type), in batches, with the replies of
    `extras(keys)`.

    SCAN runs on `channel` and is turned around the moment it answers; the per-key
    commands go to `worker`, a second connection to the same node (opened here when not
    given), with up to `depth` batches in flight. So while a batch is with the caller the
    server already has the next SCAN and the next batches' commands to work on. Neither
    channel may be used by the caller until the generator is done."""
    own = extras is not None and worker is None
    if own:
        worker = NodeChannel(channel.address, channel.client, channel.limiter, channel.readonly)
    # Under --rate, per-key commands go in pieces of at most a bucket (a third of one:
    # up to three commands a key), so the server sees a steady stream, not bursts.
    piece = max(1, channel.limiter.burst // 3) if channel.limiter is not None else 0
    try:
        channel.send(scan_args(b"0", pattern, count, type_), 1)
        more = True
        inflight: deque[tuple[list[bytes], int]] = deque()
        while more or inflight:
            if more and len(inflight) < depth:
                cursor, keys = scan_reply(channel, channel.read(1)[0])
                more = cursor != b"0"
                if more:
                    channel.send(scan_args(cursor, pattern, count, type_), 1)
                if extras is None:
                    if keys:
                        yield Batch(channel.address, keys, [])
                    continue
                if keys:
                    nreplies = 0
                    for part in _pieces(keys, piece):
                        payload, n = extras(part)
                        worker.send(payload, n)  # type: ignore[union-attr]
                        nreplies += n
                    inflight.append((keys, nreplies))
                continue
            keys, nreplies = inflight.popleft()
            yield Batch(channel.address, keys, worker.read(nreplies))  # type: ignore[union-attr]
    finally:
        if own and worker is not None:
            worker.close()


def _pieces(keys: list[bytes], size: int) -> list[list[bytes]]:
    if not size or len(keys) <= size:
        return [keys]
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def has_error(replies: list[Any]) -> bool:
    """Any error reply among these? (One C-level pass: this runs per batch of 1000.)"""
    return hiredis.ReplyError in map(type, replies)


def first_error(replies: list[Any]) -> str:
    return str(next(r for r in replies if isinstance(r, Exception)))


def scan_reply(channel: NodeChannel, reply: Any) -> tuple[bytes, list[bytes]]:
    if isinstance(reply, Exception):
        raise ServerRefused(channel.address, str(reply))
    return reply[0], reply[1]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0]
