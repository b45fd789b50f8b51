"""The upstream side of a proxied connection: how to reach and log in to a cache node
(`Upstream`, built from the settings by `upstream_for`), the asyncio Protocol of that
connection (`NodeLink`), and the blocking calls (dial, a password or IAM token) run off the
event loop."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from closeup_ops.settings import Settings

HIGH_WATER = 1 << 20  # bytes queued for one side before the other side stops reading


@dataclass
class Upstream:
    tls: bool = False
    server_name: str | None = None  # name to verify (and SNI) when a node is known by IP only
    ca_cert: str | None = None  # None: the system store
    insecure: bool = False
    username: str | None = None
    # called for each new upstream connection and after each RESET; None: no credentials
    password: Callable[[], str | None] | None = None
    timeout: float = 5.0


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def auth_command(username: str | None, password: str) -> bytes:
    args = [b"AUTH"] + ([username.encode()] if username else []) + [password.encode()]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class NodeLink:
    """The connection to the node (Protocol); hands bytes to its Client."""

    def __init__(self, client: Any) -> None:  # links.Client
        self.client = client
        self.transport: Any = None
        self._auth: Any = None  # a future while our AUTH's reply is awaited
        self._auth_buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    async def authenticate(self, up: Upstream, password: str) -> str | None:
        """Send AUTH; None when accepted, else the server's reason (never the password)."""
        import asyncio

        self._auth = asyncio.get_running_loop().create_future()
        self.transport.write(auth_command(up.username, password))
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


def as_user(username: str | None) -> str:
    return f" as {username}" if username else ""


def cause(exc: BaseException) -> str:
    import asyncio
    import ssl

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not str(exc):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return str(exc) or type(exc).__name__


def in_thread(fn: Callable, *args: Any) -> Any:
    """Run a blocking call on a daemon thread (never holds interpreter exit); an awaitable."""
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.cancelled():
            if exc is None and isinstance(result, tuple):
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
            if exc is None and isinstance(result, tuple):
                result[0].close()

    threading.Thread(target=work, name="closeup-ops-dial", daemon=True).start()
    return future


def upstream_for(settings: Settings) -> Any:
    """How the proxy reaches the cache: TLS per the settings, AUTH with the settings' user
    and password, or a fresh IAM token per upstream connection (and after a RESET); no
    password at all when the tunnel has no credentials (the client's AUTH passes through)."""
    password: Callable[[], str | None] | None = None
    if settings.iam_auth:
        from closeup_ops.connect.iam import iam_provider

        provider = iam_provider(settings)  # one botocore session; a token per call
        password = provider.token
    elif settings.password:
        password = settings.password.reveal

    return Upstream(
        tls=settings.use_tls,
        # a node known only by its IP (ROLE, INFO replication and MOVED on a cluster-mode
        # disabled cache) is checked against this name: REDIS_TLS_SERVER_NAME, else the
        # endpoint (an ElastiCache certificate covers the cache's node names too)
        server_name=settings.server_name,
        ca_cert=settings.ca_cert,
        insecure=settings.insecure,
        username=settings.username,
        password=password,
        timeout=settings.timeout,
    )
