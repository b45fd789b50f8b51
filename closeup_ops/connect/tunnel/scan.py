"""Pairing a connection's replies with its requests, at wire speed (pure code, no sockets).

The `ReplyScanner` walks the server's bytes, takes one kind per reply from `Pending`
(filled by commands.py) and returns what to send to the client: the very bytes received,
except topology answers (handed whole to `rewrite`) and `-MOVED`/`-ASK` lines (handed to
`redirect`; the reply to the proxy's own AUTH after a RESET is handed to `reauthed` and not
passed on). It only looks at header lines and skips payloads by length, so a large value
streams and nothing else is copied or decoded; runs of small replies (a pipeline) are
taken a few C calls at a time. The loop is written flat (locals, no per-element calls) on
purpose.

Pub/sub is followed as the server does it (redis-server 7): in RESP2 a connection holding
any subscription is in pub/sub context, where messages come unasked and every other frame
answers a request; it leaves after the (P|S)UNSUBSCRIBE that drops the last one (the count
an UNSUBSCRIBE or PUNSUBSCRIBE reply gives is channels + patterns, a SUNSUBSCRIBE's shard
channels only, so both are kept). In RESP3 confirmations are pushes, while a refused
(S)SUBSCRIBE (-MOVED, -CROSSSLOT, -NOPERM) gets a plain error: the pending entry of a
pub/sub command is taken by its error or by its last confirmation. Which protocol holds
is learnt from HELLO's reply. Only frames met while a pub/sub entry is due, or in pub/sub
context, take the slower path (`_pubsub`); MONITOR stays a stream until `+RESET`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from closeup_ops.connect.tunnel.commands import CommandScanner
from closeup_ops.connect.tunnel.resp import (
    CRLF,
    HELLO2,
    HELLO3,
    MONITOR,
    NORMAL,
    REAUTH,
    RESET,
    SUBSCRIBE,
    Kind,
    Pending,
    first_word,
    frame_end,
    needs_rewrite,
)

__all__ = ["CommandScanner", "ReplyScanner"]

_SIMPLE_RUN = re.compile(rb"(?:[+:][^\r\n]{0,999}\r\n)+")
# bounded (values under 1000 bytes): the pattern never walks through a large payload
_BULK_RUN = re.compile(rb"(?:\$\d{1,3}\r\n[^\r\n]{0,999}\r\n)+")
_BULK = re.compile(rb"\$(\d{1,3})\r\n[^\r\n]{0,999}\r\n")


def _run_end(data: bytes, pos: int, t: int) -> tuple[int, int]:
    """(end, count) of a run of complete `+...` / `:n` lines or of small bulk strings at `pos`
    (count 0: none). A bulk run is only taken when the lengths the headers state add up to the
    bytes the pattern saw: a payload holding CRLF makes the pattern cut it short and the
    sums differ (the stated side is always larger), so such a run is left to the loop."""
    if t == 43 or t == 58:
        run = _SIMPLE_RUN.match(data, pos)
        if run:
            return run.end(), data.count(CRLF, pos, run.end())
    elif t == 36:
        run = _BULK_RUN.match(data, pos)
        if run:
            end = run.end()
            sizes = _BULK.findall(data, pos, end)
            stated = sum(map(int, sizes))
            if stated == end - pos - 5 * len(sizes) - sum(map(len, sizes)):
                return end, len(sizes)
    return 0, 0


_MAX_HOLD = 1 << 20  # an unfinished header line longer than this is not RESP
_MESSAGES = frozenset((b"message", b"pmessage", b"smessage"))  # unasked
# a confirmation's verb -> which count it gives: channels + patterns (0, 1), shard (2)
_CONFIRMS = {b"subscribe": 0, b"unsubscribe": 0, b"psubscribe": 1, b"punsubscribe": 1}
_CONFIRMS |= {b"ssubscribe": 2, b"sunsubscribe": 2}


def _whole(kind: Kind) -> bool:
    """A reply taken whole before it is passed on: a topology answer, or our AUTH's."""
    return kind == REAUTH or needs_rewrite(kind)


class ReplyScanner:
    def __init__(
        self,
        pending: Pending,
        rewrite: Callable[[Kind, bytes], bytes],
        redirect: Callable[[bytes], bytes],
        reauthed: Callable[[bytes], None] = lambda reply: None,
    ) -> None:
        self.pending = pending
        self.rewrite = rewrite
        self.redirect = redirect
        self.reauthed = reauthed
        # MONITOR: a stream, nothing paired until `+RESET` (-MOVED/-ASK still rewritten by
        # content); SUBSCRIBE: RESP2 pub/sub context (see the module doc); 0: neither
        self.stream = NORMAL
        self.protocol = 2  # as the server's replies to HELLO and RESET said
        self.subs = [0, 0, 0]  # subscriptions held: channels, patterns, shard channels
        self._hold = b""
        self._todo = 0  # elements still due to finish the reply in progress (0: between)
        self._skip = 0  # bytes of a bulk payload still to pass on
        self._kind: Kind = NORMAL  # a special kind of the reply in progress
        self._top = 0  # type byte of the reply in progress

    def feed(self, data: bytes) -> list[bytes]:
        if self._hold:
            data = self._hold + data
            self._hold = b""
        out: list[bytes] = []
        start = pos = 0
        n = len(data)
        find = data.find
        pending = self.pending
        specials = pending.specials
        todo, skip = self._todo, self._skip
        whole = todo == 1 and self._kind != NORMAL and _whole(self._kind)
        while True:
            if skip:
                if n - pos < skip:
                    skip -= n - pos
                    pos = n
                    break
                pos += skip
                skip = 0
                todo -= 1
                if not todo and self._kind != NORMAL:
                    self._reply_done()
                continue
            if pos >= n:
                break
            if not todo:  # a new reply starts here
                t = data[pos]
                slow = self.stream
                if not specials and not slow:
                    end, count = _run_end(data, pos, t)
                    if count:  # a run of small plain replies (a pipeline): a few C calls
                        pending.tail = max(pending.tail - count, 0)
                        pos = end
                        continue
                todo = 1
                if slow:
                    pass
                elif t != 62:  # a push ('>') answers no request
                    if specials:
                        head = specials[0]
                        if head[0]:
                            head[0] -= 1
                        elif head[1] == SUBSCRIBE:
                            slow = SUBSCRIBE
                        else:
                            specials.popleft()
                            self._kind, self._top = head[1], t
                            whole = _whole(head[1])
                    elif pending.tail:
                        pending.tail -= 1
                elif specials and not specials[0][0] and specials[0][1] == SUBSCRIBE:
                    slow = SUBSCRIBE  # maybe the confirmation it waits for
                if slow:
                    end = self._pubsub(data, pos, t, slow)
                    if end:  # a confirmation, taken whole; or more bytes are needed
                        todo = 0
                        if end < 0:
                            break
                        pos = end
                        continue
                    whole = self._kind != NORMAL and _whole(self._kind)
            if whole:  # a topology answer: rewritten whole (they are small); our AUTH's: kept
                end = frame_end(data, pos)
                if end < 0:
                    break  # wait for the rest (held below)
                out.append(data[start:pos])
                if self._kind == REAUTH:
                    self.reauthed(data[pos:end])
                else:
                    out.append(self.rewrite(self._kind, data[pos:end]))
                start = pos = end
                todo, whole, self._kind = 0, False, NORMAL
                continue
            eol = find(CRLF, pos)
            if eol < 0:
                break
            t = data[pos]
            if t == 36 or t == 61 or t == 33:  # $ = !  a length, then bytes
                size = int(data[pos + 1 : eol])
                pos = eol + 2
                if size >= 0:
                    if pos + size + 2 > n:
                        skip = size + 2  # streams: passed on as it comes
                        continue
                    pos += size + 2
                todo -= 1
            elif t == 42 or t == 37 or t == 126 or t == 62 or t == 124:  # * % ~ > |
                count = int(data[pos + 1 : eol])
                pos = eol + 2
                if count > 0:
                    todo += 2 * count if t == 37 else (2 * count + 1 if t == 124 else count)
                elif t == 124:
                    todo += 1
                todo -= 1
            else:
                if t == 45 and (data.startswith(b"-MOVED ", pos) or data.startswith(b"-ASK ", pos)):
                    out.append(data[start:pos])
                    out.append(self.redirect(data[pos : eol + 2]))
                    start = eol + 2
                elif self.stream == MONITOR and todo == 1 and data[pos:eol] == b"+RESET":
                    self._end_stream()
                pos = eol + 2
                todo -= 1
            if not todo and self._kind != NORMAL:
                self._reply_done()
        self._todo, self._skip = todo, skip
        if pos < n:
            self._hold = data[pos:]
            if len(self._hold) > _MAX_HOLD and not _whole(self._kind):
                raise ValueError("not RESP: an endless header line")
        if not out and start == 0 and pos == n:
            return [data]
        out.append(data[start:pos])
        return out

    def _pubsub(self, data: bytes, pos: int, t: int, mode: Kind) -> int:
        """A frame at `pos` met in pub/sub context (`mode` SUBSCRIBE), while a pub/sub
        command's entry is due, or in a MONITOR stream. A confirmation is taken whole and
        counted: its end is returned. 0: the frame is walked as usual, paired with a request
        here if it answers one (not a message, a push, or a MONITOR line). -1: more bytes."""
        if mode == MONITOR:
            return 0
        if t == (62 if self.protocol == 3 else 42):  # a push, or a RESP2 array
            word = first_word(data, pos)
            if word is None:
                return -1
            if word in _MESSAGES:
                return 0
            which = _CONFIRMS.get(word)
            if which is not None:
                end = frame_end(data, pos)
                if end > 0:
                    self._confirmed(which, int(data[data.rindex(b":", pos, end) + 1 : end - 2]))
                return end
        if t == 62:
            return 0  # a push of another kind (a client-tracking invalidation...)
        pending = self.pending
        specials = pending.specials
        if specials:
            head = specials[0]
            if head[0]:
                head[0] -= 1
            else:
                specials.popleft()
                self._kind, self._top = head[1], t
        elif pending.tail:
            pending.tail -= 1
        return 0

    def _confirmed(self, which: int, count: int) -> None:
        """A (P|S)(UN)SUBSCRIBE confirmation saying `count`: one of the replies due to the
        pub/sub command at the head of the queue."""
        subs = self.subs
        if which == 2:
            subs[2] = count
        else:  # the count is channels + patterns: the difference is this kind's
            subs[which] += count - subs[0] - subs[1]
        specials = self.pending.specials
        if specials and not specials[0][0] and specials[0][1] == SUBSCRIBE:
            head = specials[0]
            if head[2] > 1:
                head[2] -= 1
            elif head[2] == 1 or not subs[which]:  # an UNSUBSCRIBE of all: one per channel
                specials.popleft()
                self._pubsub_done()

    def _pubsub_done(self) -> None:
        """A pub/sub command has all its replies: RESP2 is in pub/sub context while any
        subscription is held (the server decides so after each of them)."""
        if self.protocol == 2 and self.stream != MONITOR:
            self.stream = SUBSCRIBE if any(self.subs) else NORMAL

    def _reply_done(self) -> None:
        kind, self._kind = self._kind, NORMAL
        if kind == SUBSCRIBE:  # its error (confirmations are counted as they come)
            self._pubsub_done()
        elif self._top == 45 or self._top == 33:
            return  # an error: nothing switched
        elif kind == MONITOR:
            self.stream = MONITOR
        elif kind == RESET:
            self._reset()
        elif kind == HELLO3 or kind == HELLO2:
            self.protocol = 3 if kind == HELLO3 else 2
            # subscriptions made in RESP3 put the connection in RESP2 pub/sub context now
            self.stream = SUBSCRIBE if kind == HELLO2 and any(self.subs) else NORMAL

    def _reset(self) -> None:
        self.stream, self.protocol, self.subs = NORMAL, 2, [0, 0, 0]

    def _end_stream(self) -> None:
        """`+RESET` ends a MONITOR stream: the requests sent meanwhile are dropped."""
        self._reset()
        specials = self.pending.specials
        while specials:  # requests sent in stream mode, up to the RESET that ended it
            if specials.popleft()[1] == RESET:
                break
        else:
            self.pending.tail = 0
