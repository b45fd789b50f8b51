"""One local client connection and its upstream connection to a cache node (asyncio
Protocols, used by proxy.NodeProxy on its event-loop thread).

The upstream side is dialed on a helper thread (the dialer blocks: SSH), wrapped in TLS
verified against the node's name, authenticated when the tunnel holds credentials; then
bytes flow both ways, replies through the pairing scanners in cluster mode. Each side stops
reading while the other side's send buffer is full. A failure reaches the client as one
`-ERR closeup-ops tunnel: ...` line, then EOF.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from closeup_ops.connect.tunnel.resp import Kind, Pending
from closeup_ops.connect.tunnel.rewrite import rewrite_redirect, rewrite_reply
from closeup_ops.connect.tunnel.scan import CommandScanner, ReplyScanner

Dial = Callable[
    [str, int], socket.socket
]  # a connected socket to (host, port) as the bastion sees it

TLS_HINT = (
    b"-ERR closeup-ops tunnel: the local side is plain TCP; turn TLS off in the client "
    b"(REDIS_TLS=false, rediss:// -> redis://)\r\n"
)
_HIGH_WATER = 1 << 20  # bytes queued for one side before the other side stops reading
_LINGER = 5.0  # after an error line: seconds to let the client read it before closing


@dataclass
class Upstream:
    tls: bool = False
    server_name: str | None = None  # name to verify (and SNI) when a node is known by IP only
    ca_cert: str | None = None  # None: the system store
    insecure: bool = False
    username: str | None = None
    password: Callable[[], str | None] | None = None  # called for each new upstream connection
    timeout: float = 5.0


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _auth_command(username: str | None, password: str) -> bytes:
    args = [b"AUTH"] + ([username.encode()] if username else []) + [password.encode()]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _one_line(text: str) -> bytes:
    return " ".join(str(text).split()).encode("utf-8", "replace")


class Client:
    """One local client connection and its upstream connection (an asyncio Protocol)."""

    def __init__(self, proxy: Any, node: tuple[str, int]) -> None:
        self.proxy = proxy
        self.node = node
        self.transport: Any = None
        self.upstream: _Upstream | None = None
        self.ready = False
        self.backlog: list[bytes] = []
        self.backlog_size = 0
        self.first = True
        self.failed = False
        self.eof_pending = False
        self._opening: Any = None
        self.commands: CommandScanner | None = None
        self.replies: ReplyScanner | None = None
        if proxy.cluster:
            pending = Pending()
            self.commands = CommandScanner(pending)
            self.replies = ReplyScanner(pending, self._rewrite, self._redirect)

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        import asyncio

        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)
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
        if self.commands is not None:
            try:
                self.commands.feed(data)
            except (ValueError, IndexError):
                self.commands = None  # not RESP: the server will say so; stop pairing
                self.replies.pending.clear()
        if self.ready:
            self.upstream.transport.write(data)
        else:
            self.backlog.append(data)
            self.backlog_size += len(data)
            if self.backlog_size > _HIGH_WATER:
                self.transport.pause_reading()

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
            sock, password = await asyncio.wait_for(_in_thread(proxy.dial, host, port), up.timeout)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls: dict[str, Any] = {}
            if up.tls:
                name = host if not _is_ip(host) else (up.server_name or host)
                tls = dict(ssl=proxy.ssl_context(), server_hostname=name)
                tls["ssl_handshake_timeout"] = up.timeout
            _, self.upstream = await asyncio.wait_for(
                loop.create_connection(lambda: _Upstream(self), sock=sock, **tls), up.timeout
            )
            if password is not None:
                refused = await asyncio.wait_for(
                    self.upstream.authenticate(up, password), up.timeout
                )
                if refused:
                    raise PermissionError(f"authentication{_as(up.username)} refused: {refused}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._close_upstream()
            self.fail(f"cannot reach node {host}:{port}: {_cause(exc)}")
            return
        if self.failed or self.transport.is_closing():
            self._close_upstream()
            return
        self.ready = True
        if self.backlog:
            self.upstream.transport.writelines(self.backlog)
            self.backlog = []
            self.transport.resume_reading()
        if self.eof_pending and not self.eof_received():
            self.transport.close()

    def _close_upstream(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abort()

    def from_upstream(self, data: bytes) -> None:
        if self.replies is None:
            self.transport.write(data)
            return
        try:
            chunks = self.replies.feed(data)
        except OSError as exc:  # no local listener could be made for a new node
            self.fail(f"cannot forward a new node: {_cause(exc)}")
            return
        except (ValueError, IndexError) as exc:
            self.proxy.fault(f"unparseable reply from {self.node}: {exc!r}")
            self.fail("unexpected reply from the cache (protocol); reconnect")
            return
        if len(chunks) == 1:
            self.transport.write(chunks[0])
        else:
            self.transport.writelines(chunks)

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

    # rewriting
    def _map(self, host: str | None, port: int, ip: str | None) -> int:
        return self.proxy.local_port(host, port, ip, self.node)

    def _rewrite(self, kind: Kind, frame: bytes) -> bytes:
        return rewrite_reply(kind, frame, self._map, self.proxy.upstream.tls)

    def _redirect(self, line: bytes) -> bytes:
        return rewrite_redirect(line, self._map)


class _Upstream:
    """The connection to the node (Protocol); hands bytes to its Client."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: Any = None
        self._auth: Any = None  # a future while our AUTH's reply is awaited
        self._auth_buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)

    async def authenticate(self, up: Upstream, password: str) -> str | None:
        """Send AUTH; None when accepted, else the server's reason (never the password)."""
        import asyncio

        self._auth = asyncio.get_running_loop().create_future()
        self.transport.write(_auth_command(up.username, password))
        return await self._auth

    def data_received(self, data: bytes) -> None:
        if self._auth is not None:
            self._auth_buf += data
            eol = self._auth_buf.find(b"\r\n")
            if eol < 0:
                return
            line, rest = self._auth_buf[:eol], self._auth_buf[eol + 2 :]
            future, self._auth, self._auth_buf = self._auth, None, b""
            if not future.done():
                future.set_result(None if line == b"+OK" else line[1:].decode("utf-8", "replace"))
            if not rest:
                return
            data = rest
        self.client.from_upstream(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._auth is not None and not self._auth.done():
            self._auth.set_exception(ConnectionError("connection closed during AUTH"))
        self.client.upstream_lost()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


def _as(username: str | None) -> str:
    return f" as {username}" if username else ""


def _cause(exc: BaseException) -> str:
    import asyncio
    import ssl

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not str(exc):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return str(exc) or type(exc).__name__


def _in_thread(fn: Callable, *args: Any) -> Any:
    """Run a blocking call on a daemon thread (never holds interpreter exit); an awaitable."""
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.cancelled():
            if exc is None and hasattr(result, "__getitem__"):
                result[0].close()  # nobody waits for this socket any more
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def work() -> None:
        try:
            result, exc = fn(*args), None
        except BaseException as error:
            result, exc = None, error
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop is closed: the proxy is gone
            if exc is None and result is not None:
                result[0].close()

    threading.Thread(target=work, name="closeup-ops-dial", daemon=True).start()
    return future
