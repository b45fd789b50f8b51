"""The dialers the proxy opens its upstream connections with, through a real sshd: OpenSSH's
stdio forwards on its control socket (host name sent for the far side to resolve) and
paramiko's direct-tcpip channels; both survive a reconnect; a port nobody listens on is an
OSError."""

from __future__ import annotations

import socket
import time

import pytest

from closeup_ops.connect.tunnel.bastion import Bastion, check
from closeup_ops.connect.tunnel.engines import OpenSshForwards, ParamikoForwards, port_free
from closeup_ops.connect.tunnel.nodes import Forward
from closeup_ops.local.servers import free_port


def bastion_for(sshd) -> Bastion:
    return Bastion(sshd.host, sshd.port, sshd.user, str(sshd.client_key), sshd.known_hosts)


@pytest.fixture(params=["openssh", "paramiko"])
def engine(request, sshd):
    b = bastion_for(sshd)
    kind = OpenSshForwards if request.param == "openssh" else ParamikoForwards
    eng = kind(b, check(b), [], **({"dynamic": True} if request.param == "openssh" else {}))
    eng.start()
    yield eng
    eng.close()


@pytest.fixture
def openssh(sshd):
    """The OpenSSH engine as the tunnel runs it, started, closed after the test."""
    b = bastion_for(sshd)
    eng = OpenSshForwards(b, check(b), [], dynamic=True)
    eng.start()
    yield eng
    eng.close()


def ping(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    sock.sendall(b"PING\r\n")
    return sock.recv(64)


def test_dial_by_name_and_by_ip(engine, redis_plain):
    dial = engine.dialer()
    # "localhost" goes to the bastion as a name (the direct-tcpip host string); a stream
    # socket comes back (OpenSSH: one end of a socketpair; paramiko: a loopback TCP pair)
    for host in ("localhost", "127.0.0.1"):
        with dial(host, redis_plain.port) as sock:
            assert sock.type == socket.SOCK_STREAM
            assert ping(sock) == b"+PONG\r\n"


def test_dial_many_at_once(engine, redis_plain):
    dial = engine.dialer()
    socks = [dial("127.0.0.1", redis_plain.port) for _ in range(20)]
    try:
        assert all(ping(s) == b"+PONG\r\n" for s in socks)
    finally:
        for s in socks:
            s.close()


def test_dial_closed_port_is_an_oserror(engine):
    with pytest.raises(OSError):
        engine.dialer()("127.0.0.1", free_port())


def test_dialer_works_after_a_restart(engine, redis_plain, sshd):
    dial = engine.dialer()
    engine.stop()
    assert not engine.alive()
    with pytest.raises(OSError):
        dial("127.0.0.1", redis_plain.port)  # session down: fails fast, never hangs
    engine.pin(check(bastion_for(sshd)))
    engine.start()
    with dial("127.0.0.1", redis_plain.port) as sock:
        assert ping(sock) == b"+PONG\r\n"


def test_set_forwards_opens_and_frees_local_ports(engine, redis_plain):
    port = free_port()
    engine.set_forwards([Forward("127.0.0.1", redis_plain.port, port)])
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        assert ping(sock) == b"+PONG\r\n"
    engine.set_forwards([])
    assert port_free(port)
    with engine.dialer()("127.0.0.1", redis_plain.port) as sock:  # dialer unaffected
        assert ping(sock) == b"+PONG\r\n"


def test_openssh_adds_and_cancels_forwards_on_the_running_session(openssh, redis_plain):
    """Through the control socket: same ssh process, and an upstream connection opened
    before the change keeps working (a restart would have cut it)."""
    eng = openssh
    pid = eng.proc.pid
    held = eng.dialer()("127.0.0.1", redis_plain.port)
    port = free_port()
    eng.set_forwards([Forward("127.0.0.1", redis_plain.port, port)])
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        assert ping(sock) == b"+PONG\r\n"
    eng.set_forwards([])
    assert port_free(port)
    assert eng.proc.pid == pid and eng.restarts == 0
    assert ping(held) == b"+PONG\r\n"
    held.close()


def test_openssh_without_its_control_socket_restarts_to_change_forwards(openssh, redis_plain):
    eng = openssh
    pid = eng.proc.pid
    eng._control.unlink()  # as with an ssh that cannot multiplex
    port = free_port()
    eng.set_forwards([Forward("127.0.0.1", redis_plain.port, port)])
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        assert ping(sock) == b"+PONG\r\n"
    assert eng.proc.pid != pid and eng.restarts == 1


def test_openssh_after_a_dropped_session_still_changes_forwards_in_place(openssh, redis_plain):
    """A master killed outright leaves its control socket behind; the restarted session
    makes its own, so later forward changes still need no restart."""
    eng = openssh
    eng.proc.kill()  # SIGKILL: no clean-up of the socket
    eng.proc.wait(5)
    assert eng._control.exists()
    eng.start()  # what check_alive does after a drop
    pid = eng.proc.pid
    port = free_port()
    eng.set_forwards([Forward("127.0.0.1", redis_plain.port, port)])
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        assert ping(sock) == b"+PONG\r\n"
    assert eng.proc.pid == pid and eng.restarts == 0


def listening_ports_of(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (ss -ltnp)."""
    import subprocess

    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {
        int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line
    }


def test_openssh_dials_through_its_private_control_socket_not_a_port(openssh, redis_plain):
    """No SOCKS port on loopback (any local user could reach the VPC through it as us): the
    ssh master listens on no TCP port but its -L forwards, and its control socket sits in a
    directory only this user can enter."""
    import os
    import stat

    from closeup_ops.connect.tunnel import dial as dial_module

    eng = openssh
    assert listening_ports_of(eng.proc.pid) == set()
    assert stat.S_IMODE(os.stat(eng._control.parent).st_mode) == 0o700
    before = dial_module._REAPER.held()
    socks = [eng.dialer()("127.0.0.1", redis_plain.port) for _ in range(10)]
    assert all(ping(s) == b"+PONG\r\n" for s in socks)
    assert dial_module._REAPER.held() == before + 10  # one control connection each
    for s in socks:
        s.close()
    # ssh ends each forward and closes its control connection; ours are closed too
    deadline = time.monotonic() + 10
    while dial_module._REAPER.held() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dial_module._REAPER.held() == before
    with pytest.raises(ConnectionRefusedError, match="cannot open 127.0.0.1:1"):
        eng.dialer()("127.0.0.1", 1)  # nothing listens there: refused at once, said
