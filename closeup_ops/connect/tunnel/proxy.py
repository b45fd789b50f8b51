"""The tunnel's local RESP proxy: one plain-TCP listener on loopback per cache node.

Each accepted client gets its own upstream connection, made with `dial` (a connected socket
to the node as the bastion sees it), wrapped in TLS when the cache uses it (verified against
the node's name), authenticated when the tunnel holds the credentials. The replies that carry
node addresses (cluster topology, MOVED/ASK; ROLE and INFO's replication lines, cluster mode
or not) are rewritten to the local listeners (resp.py, rewrite.py, replication.py),
and a node seen for the first time gets its listener before that reply is sent. All other
bytes pass through as received. One asyncio event loop on a background thread does the work
with Protocols (no streams); a blocking dial runs on a short-lived daemon thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from closeup_ops.connect.tunnel.links import TLS_HINT, Client, Dial
from closeup_ops.connect.tunnel.upstream import Upstream

log = logging.getLogger("closeup_ops.tunnel.proxy")


LOOP_ENV = "CLOSEUP_OPS_PROXY_LOOP"  # "asyncio" forces the standard library's loop


def new_loop() -> Any:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's. Measured
    beside `ssh -L` (benchmarks/RESULTS.md, any-client proxy): with uvloop the proxy alone
    moves 1 MB GETs at ~590 MB/s instead of ~94 and pipelined GETs ~25% faster, which is what
    brings the tunnel within the issue's targets; the protocol code is the same for both."""
    import asyncio
    import os

    if os.environ.get(LOOP_ENV, "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class NodeProxy:
    """Local listeners for cache nodes (see module doc). Thread-safe public methods."""

    def __init__(
        self,
        dial: Dial,
        upstream: Upstream,
        *,
        cluster: bool,
        bind: str = "127.0.0.1",
        announce: Callable[[str], None] = lambda s: None,
        announce_host: str | None = None,
    ) -> None:
        self._dial = dial
        self.upstream = upstream
        self.cluster = cluster
        self.bind = bind
        self.announce = announce
        # the name or address written into replies for every node (--announce), instead of
        # the address each client dialled
        self.announce_host = announce_host.encode() if announce_host else None
        self.errors: list[str] = []  # internal faults (a bug, not a network error), for tests
        self._lock = threading.RLock()
        self._nodes: dict[tuple[str, int], int] = {}
        self._aliases: dict[tuple[str, int], int] = {}  # a node's IP when named by hostname
        self._targets: dict[int, tuple[str, int]] = {}  # local port -> node
        self._sockets: list[socket.socket] = []
        self._unserved: list[tuple[socket.socket, tuple[str, int]]] = []
        self._servers: list[Any] = []
        self.clients: set[Client] = set()
        self._loop: Any = None
        self._thread: threading.Thread | None = None
        self._ssl: Any = None
        self._closed = False

    # -- public API ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = new_loop()
        self._loop.set_exception_handler(self._on_loop_error)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="closeup-ops-proxy", daemon=True
        )
        self._thread.start()
        ready.wait(10)

    def add(self, host: str, port: int, local_port: int | None = None) -> int:
        key = (host, int(port))
        with self._lock:
            if key in self._nodes:
                return self._nodes[key]
            sock = socket.socket(socket.AF_INET6 if ":" in self.bind else socket.AF_INET)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.bind, local_port or 0))
                sock.listen(512)  # connections wait in the backlog until the loop serves them
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            local = sock.getsockname()[1]
            self._nodes[key] = local
            self._targets[local] = key
            self._sockets.append(sock)
            self._unserved.append((sock, key))
        self._serve_pending()
        self.announce(f"{self.bind}:{local} -> {host}:{port}")
        return local

    def nodes(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._nodes)

    def set_dial(self, dial: Dial) -> None:
        self._dial = dial

    def close(self) -> None:
        import asyncio

        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            except Exception as exc:  # the loop is going away regardless
                self.fault(f"shutdown: {exc!r}")
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        for sock in self._sockets:
            sock.close()

    # -- loop thread ----------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        import asyncio

        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.call_soon(self._serve_pending)
        try:
            loop.run_forever()
        except BaseException as exc:  # never let an exception escape the thread
            self.fault(f"event loop: {exc!r}")
        finally:
            try:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()
            except BaseException as exc:
                self.fault(f"event loop close: {exc!r}")

    def _serve_pending(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        if threading.current_thread() is not self._thread:
            loop.call_soon_threadsafe(self._serve_pending)
            return
        with self._lock:
            todo, self._unserved = self._unserved, []
        for sock, key in todo:
            loop.create_task(self._serve(sock, key))

    async def _serve(self, sock: socket.socket, key: tuple[str, int]) -> None:
        try:
            server = await self._loop.create_server(
                lambda: Client(self, key), sock=sock, backlog=512
            )
            self._servers.append(server)
        except OSError as exc:
            self.fault(f"listener for {key[0]}:{key[1]}: {exc!r}")

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for client in list(self.clients):
            client.abort()

    def _on_loop_error(self, loop: Any, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a peer went away: that connection is closed, nothing else to do
        self.fault(f"{context.get('message')}: {exc!r}")

    def fault(self, text: str) -> None:
        self.errors.append(text)
        log.warning("tunnel proxy: %s", text)

    # -- helpers used by connections ----------------------------------------------------------
    def address_for(self, sockname: Any) -> bytes:
        """What to write into replies as a node's address for a client connected to
        `sockname` (the proxy's end of that connection): --announce, else that address."""
        if self.announce_host:
            return self.announce_host
        host = sockname[0] if isinstance(sockname, tuple) and sockname else self.bind
        if host.startswith("::ffff:") and "." in host:  # IPv4 on a dual-stack listener
            host = host[7:]
        return host.split("%", 1)[0].encode()  # no IPv6 zone: clients cannot parse one

    def local_port(self, host: str | None, port: int, ip: str | None, here: tuple[str, int]) -> int:
        """The local port for a node named in a reply (a listener made now if it is new)."""
        host = host or here[0]
        with self._lock:
            local = self._nodes.get((host, port)) or self._aliases.get((host, port))
        if not local:
            local = self.add(host, port)
        if ip:
            with self._lock:
                if (ip, port) not in self._nodes:
                    self._aliases.setdefault((ip, port), local)
        return local

    def ssl_context(self) -> Any:
        if self._ssl is None:
            import ssl

            up = self.upstream
            ctx = ssl.create_default_context(cafile=up.ca_cert) if up.ca_cert else None
            ctx = ctx or ssl.create_default_context()
            if up.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        return self._ssl

    def dial(self, host: str, port: int) -> tuple[socket.socket, str | None]:
        """Blocking (runs on a helper thread): the connected socket and the password."""
        sock = self._dial(host, port)
        try:
            password = self.upstream.password() if self.upstream.password else None
        except Exception as exc:  # e.g. no AWS credentials for an IAM token
            sock.close()
            raise PermissionError(f"no password for the node: {exc}") from exc
        return sock, password


__all__ = ["TLS_HINT", "Dial", "NodeProxy", "Upstream"]
