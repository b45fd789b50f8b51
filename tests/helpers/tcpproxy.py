"""A small TCP proxy on 127.0.0.1 that plays the part of an endpoint's DNS switch.

    proxy = TcpProxy(("127.0.0.1", primary.port)).start()
    ...                      # clients connect to proxy.port
    proxy.set_upstream(("127.0.0.1", replica.port))   # the "DNS switch": old links dropped
    proxy.hold()             # stop forwarding client -> server (requests wait, as in a stall)
    proxy.freeze_downstream()  # stop forwarding server -> client (a stalled replication link)
    proxy.stop()

One thread runs a selector loop over non-blocking sockets, so switching, holding and
dropping take effect at once and in order. With no upstream (or a dead one) a new client is
accepted and closed straight away, which is what a client of a dead endpoint sees.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

Address = tuple[str, int]


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)


class TcpProxy:
    def __init__(self, upstream: Address | None, host: str = "127.0.0.1"):
        self._upstream = upstream
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._tasks: list = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._running = False
        self._thread: threading.Thread | None = None
        self._hold_up = False  # client -> server paused
        self._hold_down = False  # server -> client paused
        self.connections = 0

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    # --- control (any thread) --------------------------------------------------------
    def start(self) -> TcpProxy:
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="tcpproxy", daemon=True)
        self._thread.start()
        return self

    def set_upstream(self, upstream: Address | None, drop: bool = True) -> None:
        """Point new connections at `upstream`; drop the existing ones (as a DNS switch plus
        the old node going away would) and lift any hold."""
        self._call(lambda: self._set_upstream(upstream, drop))

    def hold(self) -> None:
        """Stop forwarding client -> server: requests already forwarded still get answers."""
        self._call(lambda: self._set_hold(up=True))

    def freeze_downstream(self) -> None:
        """Stop forwarding server -> client: data stays with the server (its output buffer)."""
        self._call(lambda: self._set_hold(down=True))

    def release(self) -> None:
        self._call(lambda: self._set_hold(up=False, down=False))

    def drop_all(self) -> None:
        self._call(self._drop_all)

    def stop(self) -> None:
        if not self._running:
            return
        self._call(self._drop_all)
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._sel.close()

    # --- loop thread --------------------------------------------------------------------
    def _call(self, fn) -> None:
        done = threading.Event()
        with self._lock:
            self._tasks.append((fn, done))
        self._wake()
        if not done.wait(5):
            raise RuntimeError("tcpproxy did not run the request")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        while self._running:
            for key, events in self._sel.select(timeout=0.5):
                kind = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    self._run_tasks()
                else:
                    link, side = kind
                    if link in self._links:
                        self._io(link, side, events)

    def _run_tasks(self) -> None:
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for fn, done in tasks:
            try:
                fn()
            finally:
                done.set()

    def _set_upstream(self, upstream: Address | None, drop: bool) -> None:
        self._upstream = upstream
        self._hold_up = self._hold_down = False  # holds were about the old upstream
        if drop:
            self._drop_all()

    def _set_hold(self, up: bool | None = None, down: bool | None = None) -> None:
        if up is not None:
            self._hold_up = up
        if down is not None:
            self._hold_down = down
        for link in self._links:
            self._update(link)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.connections += 1
        upstream = self._upstream
        server = None
        if upstream is not None:
            try:
                server = socket.create_connection(upstream, timeout=1)
            except OSError:
                server = None
        if server is None:
            _reset(client)
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, server)
        self._links.append(link)
        self._sel.register(client, selectors.EVENT_READ, (link, "client"))
        self._sel.register(server, selectors.EVENT_READ, (link, "server"))
        self._update(link)

    def _update(self, link: _Link) -> None:
        """Register each side for what it should do now (reads unless held, writes when
        there is something to write)."""
        client_ev = (0 if self._hold_up else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if link.to_client else 0
        )
        server_ev = (0 if self._hold_down else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if link.to_server else 0
        )
        for sock, ev, side in (
            (link.client, client_ev, "client"),
            (link.server, server_ev, "server"),
        ):
            try:
                if ev:
                    self._sel.modify(sock, ev, (link, side))
                else:
                    self._sel.unregister(sock)
            except KeyError:
                if ev:
                    self._sel.register(sock, ev, (link, side))

    def _io(self, link: _Link, side: str, events: int) -> None:
        src = link.client if side == "client" else link.server
        pending_out = link.to_client if side == "client" else link.to_server
        pending_in = link.to_server if side == "client" else link.to_client
        try:
            if events & selectors.EVENT_WRITE and pending_out:
                sent = src.send(pending_out)
                del pending_out[:sent]
            if events & selectors.EVENT_READ:
                data = src.recv(65536)
                if not data:
                    self._close(link)
                    return
                pending_in.extend(data)
                dst = link.server if side == "client" else link.client
                try:
                    sent = dst.send(pending_in)
                    del pending_in[:sent]
                except BlockingIOError:
                    pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(link)
            return
        self._update(link)

    def _close(self, link: _Link) -> None:
        if link in self._links:
            self._links.remove(link)
        for sock in (link.client, link.server):
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            _reset(sock)

    def _drop_all(self) -> None:
        for link in list(self._links):
            self._close(link)


def _reset(sock: socket.socket) -> None:
    """Close with RST, so the peer sees the link gone at once (and no buffered tail)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
