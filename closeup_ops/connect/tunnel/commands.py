"""What a client sends, followed to know what each reply will answer (pure code).

`CommandScanner` reads the client's byte stream (RESP arrays and inline commands, split
anywhere; the bytes themselves are forwarded untouched by the proxy) and records in
`Pending` the kind of each reply the server will send: NORMAL for almost everything, a
topology kind for CLUSTER SLOTS/SHARDS/NODES/REPLICAS, ROLE and INFO (when its reply holds
the replication section), a tuple for an EXEC holding one, and
the mode changes (MULTI, CLIENT REPLY OFF/SKIP/ON, HELLO 2/3, SUBSCRIBE, MONITOR, RESET).
Pub/sub commands and HELLO are recorded the same in RESP2 and RESP3: which protocol holds
is known only from HELLO's reply, so the ReplyScanner, which sees it, reads their replies.
With `reauth` (the proxy logs in again after a client's RESET) it also says where in the
bytes fed each RESET ends (`resets`), so the proxy can send its AUTH right there.
"""

from __future__ import annotations

from typing import Any

from closeup_ops.connect.tunnel.replication import MAX_INFO_WORDS, info_kind
from closeup_ops.connect.tunnel.resp import (
    CRLF,
    HELLO2,
    HELLO3,
    MONITOR,
    NODES,
    NORMAL,
    REAUTH,
    RESET,
    ROLE,
    SHARDS,
    SLOTS,
    SUBSCRIBE,
    Kind,
    Pending,
    needs_rewrite,
)

_CLUSTER_KINDS = {b"SLOTS": SLOTS, b"SHARDS": SHARDS, b"NODES": NODES}
_CLUSTER_KINDS |= {b"REPLICAS": NODES, b"SLAVES": NODES}
_SUBSCRIBE = frozenset((b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE"))
_UNSUBSCRIBE = frozenset((b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"))
_HELLO = {b"2": HELLO2, b"3": HELLO3}
_NOT_QUEUED_IN_MULTI = frozenset((b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"))
_WANT_ARGS = frozenset((b"CLUSTER", b"CLIENT", b"HELLO"))  # verbs whose next words matter
_SPECIAL = _WANT_ARGS | _SUBSCRIBE | _UNSUBSCRIBE | _NOT_QUEUED_IN_MULTI | {b"MONITOR"}
_SPECIAL |= {b"ROLE", b"INFO"}  # replies that may name other nodes (replication.py)
_SHORT_ARG = 64  # a longer argument is a value, never a verb: not captured
_MAX_HOLD = 1 << 20  # an unfinished header line longer than this is not RESP
_MAX_CARRY = 1 << 20  # bytes kept for _Cuts before the Python scanner walks them


class CommandScanner:
    """A client that starts with a RESP array (every client library) is read with hiredis'
    C reader (only the words are looked at; the bytes themselves were already forwarded);
    one that starts inline (a person typing) with the pure-Python loop, which also takes
    both forms mixed. Under hiredis an inline command after arrays raises ValueError: the
    proxy then stops pairing on that connection (MOVED/ASK are still rewritten); and hiredis
    keeps a long argument in memory until it is whole (the bytes themselves are forwarded
    as they arrive, so this costs memory, not latency). The Python loop skips it by length."""

    def __init__(self, pending: Pending, use_hiredis: bool = True, reauth: bool = False) -> None:
        self.pending = pending
        self.reauth = reauth
        self.resets: list[int] = []  # with reauth: offsets just past each RESET in the last feed
        self._cut = 0  # RESETs recorded and not yet placed in `resets`
        self._cuts: _Cuts | None = None
        self._reader: Any = None
        self._first = use_hiredis
        self.multi: list | None = None  # kinds of the commands queued since MULTI
        self.reply_off = False  # CLIENT REPLY OFF: no replies until ON
        self.skip_next = False  # CLIENT REPLY SKIP: no reply for the next command
        self._hold = b""
        self._left = 0  # arguments still to come of a command already recorded
        self._skip = 0  # bytes of a long argument still to come

    def feed(self, data: bytes) -> None:
        if self.resets:
            self.resets = []
        if self._first:
            self._first = False
            if data[:1] == b"*":
                try:
                    import hiredis
                except ImportError:  # pragma: no cover - hiredis is a dependency
                    pass
                else:
                    self._reader = hiredis.Reader()
                    self._cuts = _Cuts() if self.reauth else None
        if self._reader is not None:
            self._feed_reader(data)
            return
        held = len(self._hold)  # bytes of an earlier chunk in front of this one
        if self._hold:
            data = self._hold + data
            self._hold = b""
        n = len(data)
        pos = 0
        find = data.find
        normal = 0  # plain commands seen since the last special one (added in one go)
        plain = self.multi is None and not self.reply_off and not self.skip_next
        while pos < n:
            if self._skip or self._left:
                pos = self._rest_of_command(data, pos, n)
                continue
            if data[pos] != 42:  # not '*': an inline command, ends at \n
                eol = find(b"\n", pos)
                if eol < 0:
                    break
                words = data[pos:eol].split()
                pos = eol + 1
                if words:
                    self.pending.tail += normal
                    normal = 0
                    self._record(words, len(words))
                    if self._cut:
                        self._cut = 0
                        self.resets.append(pos - held)
                    plain = self.multi is None and not self.reply_off and not self.skip_next
                continue
            # the common case, flat: `*argc`, the verb, then skip the other arguments
            eol = find(CRLF, pos)
            if eol < 0:
                break
            argc = int(data[pos + 1 : eol])
            p = eol + 2
            if argc <= 0:  # `*0` / `*-1` are ignored by the server: no reply
                pos = p
                continue
            eol = find(CRLF, p)
            if eol < 0:
                break
            size = int(data[p + 1 : eol])
            p = eol + 4 + size
            if p > n:
                if size > _SHORT_ARG:
                    self._long_verb(argc, p - n)
                    return
                break
            name = data[eol + 2 : p - 2].upper() if size <= _SHORT_ARG else b""
            if plain and name not in _SPECIAL:
                for left in range(argc - 1, 0, -1):
                    eol = find(CRLF, p)
                    if eol < 0:
                        break
                    p = eol + 4 + int(data[p + 1 : eol])
                    if p > n:  # a long argument still arriving: the command is known
                        self._skip, self._left = p - n, left - 1
                        break
                else:
                    normal += 1
                    pos = p
                    continue
                normal += 1
                if self._skip:
                    break
                self._left, pos = left, p  # an argument's header line is cut
                continue
            self.pending.tail += normal
            normal = 0
            end = self._special(data, pos, n)
            if end < 0:
                break  # wait for the words that matter
            pos = end
            if self._cut:
                self._cut = 0
                self.resets.append(pos - held)
            plain = self.multi is None and not self.reply_off and not self.skip_next
        self.pending.tail += normal
        if self._skip:
            return  # the rest of this chunk was a long argument
        if pos < n:
            if n - pos > _MAX_HOLD:
                raise ValueError("not RESP: an endless header line")
            self._hold = data[pos:]

    def _feed_reader(self, data: bytes) -> None:
        import hiredis

        reader = self._reader
        reader.feed(data)
        gets = reader.gets
        pending = self.pending
        normal = 0
        plain = self.multi is None and not self.reply_off and not self.skip_next
        while True:
            try:
                command = gets()
            except hiredis.ProtocolError as exc:
                pending.tail += normal
                raise ValueError(f"not RESP arrays: {exc}") from exc
            if command is False:
                break
            if not command or type(command) is not list:
                continue  # `*0` / `*-1`: ignored by the server, no reply
            verb = command[0]
            name = verb.upper() if type(verb) is bytes else b""
            if plain and name not in _SPECIAL:
                normal += 1
                continue
            pending.tail += normal
            normal = 0
            head = command[:MAX_INFO_WORDS] if name == b"INFO" else command[:3]
            words = [w if type(w) is bytes and len(w) <= _SHORT_ARG else b"" for w in head]
            self._record(words, len(command))
            plain = self.multi is None and not self.reply_off and not self.skip_next
        pending.tail += normal
        if self._cuts is not None:
            found, self._cut = self._cut, 0
            self.resets = self._cuts.feed(data, found, reader.has_data())
            if len(self.resets) != found:
                raise ValueError("RESET not found where hiredis read it")

    def _long_verb(self, argc: int, missing: int) -> None:
        """A first word too long to be a verb, still arriving: a plain command (an error)."""
        self.pending.tail += 1
        self._skip, self._left = missing, argc - 1

    def _special(self, data: bytes, pos: int, n: int) -> int:
        """Record a command whose words matter (or that arrives in a special state); the
        position after what was consumed, or -1 to wait for more bytes."""
        find = data.find
        eol = find(CRLF, pos)
        argc = int(data[pos + 1 : eol])
        p = eol + 2
        args: list[bytes] = []
        want = 1
        i = 0
        while i < argc:
            eol = find(CRLF, p)
            if eol < 0:
                break
            size = int(data[p + 1 : eol])
            end = eol + 4 + size
            if i < want and size <= _SHORT_ARG:
                if end > n:
                    break
                args.append(data[eol + 2 : end - 2])
                if not i and argc > 1 and args[0].upper() in _WANT_ARGS:
                    want = min(argc, 3)
                elif not i and argc > 1 and args[0].upper() == b"INFO":
                    want = min(argc, MAX_INFO_WORDS)
            else:
                if i < want:
                    args.append(b"")  # a long word is a value, never a verb
                if end > n:  # a long argument still arriving: the command is known
                    self._skip, self._left = end - n, argc - i - 1
                    self._record(args, argc)
                    return n
            p = end
            i += 1
        if len(args) < want:
            return -1
        self._record(args, argc)
        if i < argc:  # the header line of a later argument is cut: resume there
            self._left = argc - i
        return p

    def _rest_of_command(self, data: bytes, pos: int, n: int) -> int:
        """Skip what is left of a command already recorded (arguments not looked at)."""
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                continue
            if not self._left:
                return pos
            eol = data.find(CRLF, pos)
            if eol < 0:
                self._hold = data[pos:]
                return n
            self._skip = int(data[pos + 1 : eol]) + 2
            self._left -= 1
            pos = eol + 2
        return pos

    def _record(self, args: list[bytes], argc: int) -> None:
        pending = self.pending
        name = args[0].upper()
        if name == b"RESET" and argc == 1:
            self._reset()
            return
        sub = args[1].upper() if len(args) > 1 else b""
        if name == b"CLIENT" and sub == b"REPLY" and len(args) > 2:
            mode = args[2].upper()
            if mode == b"ON":
                self.reply_off = False
                pending.add(NORMAL)
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
            self.multi.append(self._kind(name, sub, argc, args))
            pending.add(NORMAL)  # +QUEUED (or an error)
            return
        if name == b"EXEC" and self.multi is not None:
            kinds = tuple(self.multi)
            self.multi = None
            if not needs_rewrite(kinds) and (HELLO3 in kinds or HELLO2 in kinds):
                # the protocol switches if EXEC runs (a HELLO refused inside goes unseen)
                pending.add(next(k for k in reversed(kinds) if k in (HELLO2, HELLO3)))
                return
            pending.add(kinds if needs_rewrite(kinds) else NORMAL)
            return
        if name == b"DISCARD":
            self.multi = None
        elif name == b"MULTI" and self.multi is None:
            self.multi = []
        if name in _UNSUBSCRIBE or (name in _SUBSCRIBE and argc > 1):
            pending.add(SUBSCRIBE, argc - 1)  # one confirmation per channel (0: all held)
            return
        pending.add(self._kind(name, sub, argc, args))

    def _kind(self, name: bytes, sub: bytes, argc: int, args: list[bytes]) -> Kind:
        if name == b"CLUSTER":
            return _CLUSTER_KINDS.get(sub, NORMAL)
        if name == b"ROLE":
            return ROLE if argc == 1 else NORMAL  # with arguments: an error
        if name == b"INFO":
            return info_kind(args, argc)
        if name == b"MONITOR":
            return MONITOR
        if name == b"HELLO":
            return _HELLO.get(sub, NORMAL)  # no version, or one refused (-NOPROTO): no switch
        return NORMAL  # RESET with arguments too; inside MULTI, a pub/sub command

    def _reset(self) -> None:
        """RESET runs at once (inside MULTI too), back to RESP2 with CLIENT REPLY ON, and
        answers +RESET unless a CLIENT REPLY SKIP was for it (the server clears OFF before
        replying, but not a SKIP already in force). With `reauth` the proxy's AUTH follows
        it, and that reply is the proxy's."""
        silent = self.skip_next
        self.multi, self.reply_off, self.skip_next = None, False, False
        if not silent:
            self.pending.add(RESET)
        if self.reauth:
            self.pending.add(REAUTH)
            self._cut += 1


class _Cuts:
    """Where each RESET ends in the bytes hiredis reads (it does not say where a command
    ends). The bytes since the last point where hiredis held no partial command are kept
    and walked with the Python scanner only when a RESET shows up, or when they pile up
    (then the walker goes on from there, keeping no more than a header line)."""

    def __init__(self) -> None:
        self.walker: CommandScanner | None = None  # in step with the start of `carry`
        self.carry: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes, found: int, partial: bool) -> list[int]:
        cuts: list[int] = []
        if found:
            walker = self._catch_up()
            walker.feed(data)
            cuts = walker.resets
        elif partial:
            self.carry.append(data)
            self.size += len(data)
            if self.size > _MAX_CARRY:
                self._catch_up()
        if not partial:  # a command boundary: the next chunk starts a command
            self.walker, self.carry, self.size = None, [], 0
        return cuts

    def _catch_up(self) -> CommandScanner:
        if self.walker is None:
            self.walker = CommandScanner(Pending(), use_hiredis=False, reauth=True)
        for chunk in self.carry:
            self.walker.feed(chunk)
        self.walker.pending.clear()
        self.carry, self.size = [], 0
        return self.walker
