"""Dialers: `dial(host, port)` -> a connected stream socket to host:port as the BASTION sees
it (the name is resolved on the far side, like a VPC's private DNS). The proxy
(connect/tunnel/proxy.py) opens every upstream connection with one.

- mux_dialer: through the OpenSSH master's control socket (a 0700 directory: private to
  this user, unlike a SOCKS port on loopback, which any local user could use to reach the
  VPC), asking for a stdio forward to host:port (the NAME, resolved on the bastion) and
  handing ssh one end of a socketpair as that channel's input and output.
- channel_dialer: a paramiko `direct-tcpip` channel, bridged to a loopback TCP socket.
- dialed_connection: a redis-py connection class that dials through one of them (used to
  ask the cache whether it runs in cluster mode before the proxy starts).
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from closeup_ops.connect.tunnel.nodes import LOCAL

Dial = Callable[[str, int], socket.socket]


def _recv_exact(sock: socket.socket, size: int, what: str) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"the bastion closed the connection during {what}")
        data += chunk
    return data


# OpenSSH's multiplexing protocol (PROTOCOL.mux in its sources): length-prefixed packets
MUX_HELLO, MUX_VERSION = 0x00000001, 4
MUX_C_NEW_STDIO_FWD = 0x10000008
MUX_S_FAILURE, MUX_S_PERMISSION_DENIED, MUX_S_SESSION_OPENED = 0x80000003, 0x80000002, 0x80000006


def _mux_packet(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _mux_read(sock: socket.socket) -> bytes:
    size = struct.unpack(">I", _recv_exact(sock, 4, "the control socket's answer"))[0]
    return _recv_exact(sock, size, "the control socket's answer")


def _mux_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _ControlReaper:
    """Holds the control connection of every stdio forward: ssh ends a forward when its
    control connection closes, and closes that connection itself once the forward ends
    (either side gone). One daemon thread closes our end then, so none is leaked."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, control: socket.socket) -> None:
        control.setblocking(False)
        with self._lock:
            self._selector.register(control, selectors.EVENT_READ)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ssh-mux", daemon=True)
                self._thread.start()
        self._wake_w.send(b"x")

    def held(self) -> int:
        with self._lock:
            return len(self._selector.get_map()) - 1

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                try:
                    data = sock.recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # ssh closed it: the forward is over
                    with self._lock:
                        self._selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]


_REAPER = _ControlReaper()


def mux_connect(control: str, host: str, port: int, timeout: float) -> socket.socket:
    """One stdio forward to host:port through the master at `control` (see module doc)."""
    ctl = socket.socket(socket.AF_UNIX)
    ctl.settimeout(timeout)
    try:
        try:
            ctl.connect(control)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ConnectionError("the SSH session to the bastion is down (reconnecting)") from None
        ctl.sendall(_mux_packet(struct.pack(">II", MUX_HELLO, MUX_VERSION)))
        hello = _mux_read(ctl)
        if struct.unpack(">I", hello[:4])[0] != MUX_HELLO:
            raise ConnectionError("the ssh control socket did not answer as expected")
        ours, theirs = socket.socketpair()
        try:
            request = struct.pack(">II", MUX_C_NEW_STDIO_FWD, 1) + _mux_string(b"")
            request += _mux_string(host.encode("idna")) + struct.pack(">I", port)
            ctl.sendall(_mux_packet(request))
            for _ in range(2):  # the channel's input, then its output: the same socket
                socket.send_fds(ctl, [b"\0"], [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # ssh holds its own copies
        try:
            reply = _mux_read(ctl)
        except BaseException:
            ours.close()
            raise
        kind = struct.unpack(">I", reply[:4])[0]
        if kind != MUX_S_SESSION_OPENED:
            ours.close()
            text = reply[12:].decode("utf-8", "replace") if len(reply) > 12 else hex(kind)
            raise ConnectionRefusedError(f"the bastion cannot open {host}:{port} ({text})")
    except BaseException:
        ctl.close()
        raise
    _REAPER.hold(ctl)
    return ours


def mux_dialer(control: str | os.PathLike[str], timeout: float) -> Dial:
    """A Dial through the OpenSSH master listening on the control socket `control`."""
    path = os.fspath(control)

    def dial(host: str, remote_port: int) -> socket.socket:
        return mux_connect(path, host, remote_port, timeout)

    return dial


def channel_dialer(transport: Callable[[], Any], timeout: float) -> Dial:
    """A Dial on a paramiko transport (`transport()` returns the current one, so the same
    dialer keeps working after a reconnect): one direct-tcpip channel per call, bridged to
    a loopback TCP socket by a pump thread."""

    def dial(host: str, port: int) -> socket.socket:
        import paramiko

        current = transport()
        if current is None or not current.is_active():
            raise ConnectionError("the SSH session to the bastion is down (reconnecting)")
        try:
            channel = current.open_channel(
                "direct-tcpip", (host, port), (LOCAL, 0), timeout=timeout
            )
        except paramiko.ChannelException as exc:
            raise ConnectionRefusedError(
                f"the bastion cannot open {host}:{port} ({exc.text or exc.code})"
            ) from None
        except (paramiko.SSHException, EOFError) as exc:
            raise ConnectionError(f"the bastion did not open {host}:{port}: {exc}") from None
        try:
            ours, theirs = tcp_pair()
        except OSError:
            channel.close()
            raise
        threading.Thread(target=pump, args=(theirs, channel), daemon=True).start()
        return ours

    return dial


def pump(conn: socket.socket, channel: Any, size: int = 256 << 10) -> None:
    """Move bytes both ways between a socket and a paramiko channel until either ends."""
    import select

    try:
        while True:
            ready, _, _ = select.select([conn, channel], [], [])
            if conn in ready:
                data = conn.recv(size)
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(size)
                if not data:
                    break
                conn.sendall(data)
    except (OSError, EOFError, Exception):  # noqa: BLE001 - either side went away
        pass
    finally:
        # closing a channel on a transport that already died raises EOFError; this thread
        # must end quietly either way (no traceback on the user's terminal)
        for closing in (channel.close, conn.close):
            try:
                closing()
            except (OSError, EOFError, Exception):  # noqa: BLE001
                pass


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected loopback TCP sockets (a socketpair() is AF_UNIX: no TCP options)."""
    with socket.socket() as listener:
        listener.bind((LOCAL, 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname())
        try:
            theirs, _ = listener.accept()
        except OSError:
            ours.close()
            raise
    for sock in (ours, theirs):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ours, theirs


def dialed_connection(base: type, dial: Dial) -> type:
    """A redis-py connection class (Connection or an SSLConnection subclass) whose TCP
    connection is `dial(host, port)`; TLS, if any, is then negotiated over it as usual."""
    from redis.connection import SSLConnection

    def _connect(self: Any) -> socket.socket:
        sock = dial(self.host, self.port)
        sock.settimeout(self.socket_timeout)
        if isinstance(self, SSLConnection):
            try:
                return self._wrap_socket_with_ssl(sock)
            except BaseException:
                sock.close()
                raise
        return sock

    return type(f"Dialed{base.__name__}", (base,), {"_connect": _connect})
