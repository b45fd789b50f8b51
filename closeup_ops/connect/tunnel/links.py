"""One local client connection and its upstream connection to a cache node (asyncio
Protocols, used by proxy.NodeProxy on its event-loop thread).

The upstream side is dialed on a helper thread (the dialer blocks: SSH), wrapped in TLS
verified against the node's name, authenticated when the tunnel holds credentials; then
bytes flow both ways, replies through the pairing scanners (node addresses in topology, ROLE
and INFO replies rewritten; MOVED/ASK in cluster mode); when the tunnel holds credentials a
client's RESET logs the connection out, so the proxy sends its AUTH again right behind it
and keeps that reply from the client. Each side stops reading while
the other side's send buffer is full. A failure reaches the client as one
`-ERR closeup-ops tunnel: ...` line, then EOF.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from closeup_ops.connect.tunnel.resp import Kind, Pending
from closeup_ops.connect.tunnel.rewrite import rewrite_redirect, rewrite_reply
from closeup_ops.connect.tunnel.scan import CommandScanner, ReplyScanner
from closeup_ops.connect.tunnel.upstream import (
    HIGH_WATER,
    NodeLink,
    as_user,
    auth_command,
    cause,
    in_thread,
    is_ip,
)

Dial = Callable[
    [str, int], socket.socket
]  # a connected socket to (host, port) as the bastion sees it

TLS_HINT = (
    b"-ERR closeup-ops tunnel: the local side is plain TCP; turn TLS off in the client "
    b"(REDIS_TLS=false, rediss:// -> redis://)\r\n"
)
_LINGER = 5.0  # after an error line: seconds to let the client read it before closing


def _one_line(text: str) -> bytes:
    return " ".join(str(text).split()).encode("utf-8", "replace")


class Client:
    """One local client connection and its upstream connection (an asyncio Protocol)."""

    def __init__(self, proxy: Any, node: tuple[str, int]) -> None:
        self.proxy = proxy
        self.node = node
        self.transport: Any = None
        self.here = b"127.0.0.1"  # the address this client reaches the proxy by (see _map)
        self.upstream: NodeLink | None = None
        self.ready = False
        self.backlog: list[bytes | None] = []  # None: log in again here (after a RESET)
        self.backlog_size = 0
        self.first = True
        self.failed = False
        self.eof_pending = False
        self._opening: Any = None
        self.refused: str | None = None  # the AUTH after a RESET was refused: why
        # always paired: ROLE / INFO name replicas on a standalone cache too (replication.py)
        pending = Pending()
        reauth = proxy.upstream.password is not None
        self.commands: CommandScanner | None = CommandScanner(pending, reauth=reauth)
        redirect = self._redirect if proxy.cluster else _as_is
        self.replies = ReplyScanner(pending, self._rewrite, redirect, self._reauthed)

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        import asyncio

        self.transport = transport
        self.here = self.proxy.address_for(transport.get_extra_info("sockname"))
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.proxy.clients.add(self)
        self._opening = asyncio.get_running_loop().create_task(self._open())  # keep a reference

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return  # discarded: the client is reading an error line, then EOF
        if self.first:
            self.first = False
            if data[:1] == b"\x16":
                self.fail(None)
                return
        cuts: list[int] | tuple[()] = ()  # where a RESET ends: log in again there
        if self.commands is not None:
            try:
                self.commands.feed(data)
                cuts = self.commands.resets
            except (ValueError, IndexError):
                self.commands = None  # not RESP: the server will say so; stop pairing
                self.replies.pending.clear()
        if cuts:
            self._login_after(data, cuts)
        elif self.ready:
            self.upstream.transport.write(data)
        else:
            self._hold_back(data)

    def _hold_back(self, data: bytes) -> None:
        self.backlog.append(data)
        self.backlog_size += len(data)
        if self.backlog_size > HIGH_WATER:
            self.transport.pause_reading()

    def _login_after(self, data: bytes, cuts: list[int] | tuple[()]) -> None:
        """Send `data`, logging in again right after each RESET in it (`cuts`: where each
        one ends): what follows a RESET waits in the backlog behind the proxy's AUTH."""
        was_ready, start = self.ready, 0
        for cut in cuts:
            if self.ready:
                self.upstream.transport.write(data[start:cut])
            else:
                self._hold_back(data[start:cut])
            self.backlog.append(None)
            self.ready, start = False, cut
        if start < len(data):
            self._hold_back(data[start:])
        if was_ready:
            self._drain()

    def eof_received(self) -> bool:
        """The client is done sending (half-close): pass that on once its bytes are."""
        if self.failed:
            return False
        if not self.ready:
            self.eof_pending = True  # sent after the backlog, once the upstream is open
            return True
        if self.upstream.transport.can_write_eof():
            self.upstream.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    # upstream side
    async def _open(self) -> None:
        import asyncio

        proxy, (host, port) = self.proxy, self.node
        up = proxy.upstream
        loop = asyncio.get_running_loop()
        try:
            sock, password = await asyncio.wait_for(in_thread(proxy.dial, host, port), up.timeout)
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:  # (the OpenSSH dialer's socketpair is not TCP)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls: dict[str, Any] = {}
            if up.tls:
                name = host if not is_ip(host) else (up.server_name or host)
                tls = dict(ssl=proxy.ssl_context(), server_hostname=name)
                tls["ssl_handshake_timeout"] = up.timeout
            _, self.upstream = await asyncio.wait_for(
                loop.create_connection(lambda: NodeLink(self), sock=sock, **tls), up.timeout
            )
            if password is not None:
                refused = await asyncio.wait_for(
                    self.upstream.authenticate(up, password), up.timeout
                )
                if refused:
                    raise PermissionError(
                        f"authentication{as_user(up.username)} refused: {refused}"
                    )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._close_upstream()
            self.fail(f"cannot reach node {host}:{port}: {cause(exc)}")
            return
        if self.failed or self.transport.is_closing():
            self._close_upstream()
            return
        self._drain()

    def _drain(self) -> None:
        """Send what waits for the upstream, up to where the proxy logs in again (then the
        login goes on with the rest); once all is sent, the client's bytes go straight on."""
        import asyncio

        backlog = self.backlog
        try:
            n = backlog.index(None)
        except ValueError:
            n = len(backlog)
        if n:
            self.upstream.transport.writelines(backlog[:n])
        if n < len(backlog):
            self.backlog = backlog[n + 1 :]
            self.backlog_size = sum(len(b) for b in self.backlog if b)
            self._opening = asyncio.get_running_loop().create_task(self._login())
            return
        self.backlog, self.backlog_size, self.ready = [], 0, True
        if n:
            self.transport.resume_reading()
        if self.eof_pending and not self.eof_received():
            self.transport.close()

    async def _login(self) -> None:
        """AUTH again after a client's RESET (which logged the connection out), with the
        tunnel's credentials: a fresh IAM token, made off the loop as for a new connection."""
        import asyncio

        up = self.proxy.upstream
        try:
            password = await asyncio.wait_for(in_thread(up.password), up.timeout)
            if password is None:
                raise PermissionError("no password")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fail(f"cannot log in again after RESET: {cause(exc)}")
            return
        upstream = self.upstream
        if self.failed or upstream.transport is None or upstream.transport.is_closing():
            return
        upstream.transport.write(auth_command(up.username, password))
        self._drain()

    def _reauthed(self, reply: bytes) -> None:
        """The reply to the AUTH after a RESET (the client never sees it)."""
        if reply != b"+OK\r\n":
            text = reply[1:].decode("utf-8", "replace").strip()
            self.refused = f"authentication{as_user(self.proxy.upstream.username)} refused: {text}"

    def _close_upstream(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abort()

    def from_upstream(self, data: bytes) -> None:
        if self.failed:
            return  # the client is reading an error line, then EOF
        try:
            chunks = self.replies.feed(data)
        except OSError as exc:  # no local listener could be made for a new node
            self.fail(f"cannot forward a new node: {cause(exc)}")
            return
        except (ValueError, IndexError) as exc:
            self.proxy.fault(f"unparseable reply from {self.node}: {exc!r}")
            self.fail("unexpected reply from the cache (protocol); reconnect")
            return
        if len(chunks) == 1:
            self.transport.write(chunks[0])
        else:
            self.transport.writelines(chunks)
        if self.refused:  # after the replies to what came before the RESET
            self.fail(f"{self.refused} (logging in again after RESET)")

    def upstream_lost(self) -> None:
        self.ready = False
        if self.transport is not None and not self.failed:
            self.transport.close()  # after what is buffered for the client has been sent

    # failures: one error line, then EOF; the client's bytes are read and dropped so it can
    # read the line (closing on unread data would reset the connection and lose it)
    def fail(self, reason: str | None) -> None:
        import asyncio

        if self.failed or self.transport is None or self.transport.is_closing():
            return
        self.failed = True
        self.ready = False
        self.backlog = []
        line = (
            TLS_HINT if reason is None else b"-ERR closeup-ops tunnel: %s\r\n" % _one_line(reason)
        )
        self.transport.resume_reading()
        self.transport.write(line)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER, self.transport.close)

    def abort(self) -> None:
        self._close_upstream()
        if self.transport is not None:
            self.transport.abort()

    # rewriting: a node's local endpoint is its listener's port at the address this client
    # dialled (a client that came in on 127.0.0.2, or on a LAN address with --bind 0.0.0.0,
    # is sent back there), or at the tunnel's --announce name
    def _map(self, host: str | None, port: int, ip: str | None) -> tuple[bytes, int]:
        return self.here, self.proxy.local_port(host, port, ip, self.node)

    def _rewrite(self, kind: Kind, frame: bytes) -> bytes:
        return rewrite_reply(kind, frame, self._map, self.proxy.upstream.tls)

    def _redirect(self, line: bytes) -> bytes:
        return rewrite_redirect(line, self._map)


def _as_is(*args: Any) -> Any:
    """Redirect nothing (not in cluster mode): the line itself."""
    return args[-1]
