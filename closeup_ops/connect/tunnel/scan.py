"""Pairing a connection's replies with its requests, at wire speed (pure code, no sockets).

The `ReplyScanner` walks the server's bytes, takes one kind per reply from `Pending`
(filled by commands.py) and returns what to send to the client: the very bytes received,
except topology answers (handed whole to `rewrite`) and `-MOVED`/`-ASK` lines (handed to
`redirect`; the reply to the proxy's own AUTH after a RESET is handed to `reauthed` and not
passed on). It only looks at header lines and skips payloads by length, so a large value
streams and nothing else is copied or decoded; runs of small replies (a pipeline) are
taken a few C calls at a time. The loop is written flat (locals, no per-element calls) on
purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from closeup_ops.connect.tunnel.commands import CommandScanner
from closeup_ops.connect.tunnel.resp import (
    CRLF,
    MONITOR,
    NORMAL,
    REAUTH,
    RESET,
    SUBSCRIBE,
    Kind,
    Pending,
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
        # Stream mode (after MONITOR, or a RESP2 SUBSCRIBE): replies cannot be paired with
        # requests (messages come unasked). Only (P|S)(UN)SUBSCRIBE, PING, QUIT and RESET are
        # accepted there, and MONITOR accepts nothing but RESET/QUIT, so no topology answer
        # can arrive; -MOVED/-ASK are still rewritten by content; `+RESET` ends it.
        self.stream = False
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
                if not specials and not self.stream:
                    end, count = _run_end(data, pos, t)
                    if count:  # a run of small plain replies (a pipeline): a few C calls
                        pending.tail = max(pending.tail - count, 0)
                        pos = end
                        continue
                todo = 1
                if t != 62 and not self.stream:  # a push ('>') answers no request
                    if specials:
                        head = specials[0]
                        if head[0]:
                            head[0] -= 1
                        else:
                            specials.popleft()
                            self._kind, self._top = head[1], t
                            whole = _whole(head[1])
                    elif pending.tail:
                        pending.tail -= 1
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
                elif self.stream and todo == 1 and data[pos:eol] == b"+RESET":
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

    def _reply_done(self) -> None:
        kind, self._kind = self._kind, NORMAL
        if (kind == MONITOR or kind == SUBSCRIBE) and self._top not in (45, 33):  # not an error
            self.stream = True

    def _end_stream(self) -> None:
        self.stream = False
        specials = self.pending.specials
        while specials:  # requests sent in stream mode, up to the RESET that ended it
            if specials.popleft()[1] == RESET:
                break
        else:
            self.pending.tail = 0
