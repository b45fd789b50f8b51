"""Helpers for the RESP proxy tests: a dialer standing in for the bastion's DNS, waits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import hiredis

from closeup_ops.connect.tunnel.proxy import NodeProxy, Upstream


class NameDial:
    """dial(host, port): the test nodes' announced names resolve to 127.0.0.1 here (as the
    bastion's DNS would resolve them); every call is recorded. `refuse` makes it fail."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = set(names or [])
        self.calls: list[tuple[str, int]] = []
        self.refuse: str | None = None
        self.gate = threading.Event()  # clear it to hold every dial (a slow bastion)
        self.gate.set()
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> socket.socket:
        with self._lock:
            self.calls.append((host, port))
        self.gate.wait(30)
        if self.refuse:
            raise ConnectionRefusedError(self.refuse)
        address = "127.0.0.1" if host in self.names else host
        return socket.create_connection((address, port), timeout=5)


def wait_until(check: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_proxy(
    dial: Callable, upstream: Upstream | None = None, cluster: bool = True, **kw
) -> NodeProxy:
    proxy = NodeProxy(dial, upstream or Upstream(), cluster=cluster, **kw)
    proxy.start()
    return proxy


def cluster_proxy(names: list[str], cluster: Any):
    """The fixture body of the proxy tests against a named cluster: a started proxy (its
    NameDial as `dial_log`, the first node's listener as `entry`), closed after the test,
    which must have left no internal fault."""
    dial = NameDial(names)
    px = open_proxy(dial)
    px.dial_log = dial
    px.entry = px.add(names[0], cluster.nodes[0].port)
    yield px
    px.close()
    assert px.errors == []


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the peer sends until it closes (a hang fails the test via the timeout)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def cmd(*args: str | bytes) -> bytes:
    """One command as a client sends it (a RESP array of bulk strings)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """A raw client connection: sends bytes as given, reads replies one by one (hiredis, so
    pushes read as lists and errors as ReplyError), keeping the raw bytes too."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()
        self.raw = b""

    def send(self, *commands: bytes) -> None:
        self.sock.sendall(b"".join(commands))

    def read(self, n: int = 1) -> list:
        out = []
        while len(out) < n:
            got = self.reader.gets()
            if got is False:
                chunk = self.sock.recv(65536)
                assert chunk, f"closed after {self.raw[-300:]!r}"
                self.raw += chunk
                self.reader.feed(chunk)
                continue
            out.append(got)
        return out

    def close(self) -> None:
        self.sock.close()
