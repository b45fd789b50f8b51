"""RESET behind the proxy: the server logs the connection out (back to the `default` user),
so when the tunnel holds the credentials the proxy logs in again right behind the client's
RESET, before its next command, and keeps that AUTH's reply from the client; when the
client sent its own AUTH, RESET leaves it logged out, as the server does.

The server side runs on the `redis_acl` fixture: `default` is off, only the ACL user logs
in. Expected bytes are the server's own replies (RESET answers `+RESET`, PING `+PONG`)."""

from __future__ import annotations

import socket

import pytest
import redis
from helpers.common import ACL_PASSWORD, ACL_USER
from helpers.resp_proxy import NameDial, cmd, open_proxy, read_all, wait_until

from closeup_ops.connect.tunnel.proxy import Upstream
from closeup_ops.connect.tunnel.resp import MONITOR, NORMAL, REAUTH, RESET, Pending
from closeup_ops.connect.tunnel.scan import CommandScanner, ReplyScanner


def cuts(parts: list[bytes], step: int, c: bool) -> tuple[list[int], list, CommandScanner]:
    """Feed the parts joined, `step` bytes at a time; where each RESET ends in the stream."""
    data = b"".join(parts)
    pending = Pending()
    scanner = CommandScanner(pending, use_hiredis=c, reauth=True)
    found = []
    for start in range(0, len(data), step):
        scanner.feed(data[start : start + step])
        found += [start + offset for offset in scanner.resets]
    return found, pending.kinds(), scanner


def ends_of_resets(parts: list[bytes]) -> list[int]:
    ends, pos = [], 0
    for part in parts:
        pos += len(part)
        if part.upper() in (cmd("RESET"), b"RESET\r\n"):
            ends.append(pos)
    return ends


# ---- where the proxy logs in again (pure code) -------------------------------------------
@pytest.mark.parametrize("c", [True, False], ids=["hiredis", "python"])
def test_each_reset_is_found_where_it_ends_however_the_bytes_are_cut(c):
    parts = [cmd("SET", "k", "v" * 300), cmd("RESET"), cmd("PING"), cmd("GET", "k")]
    parts += [cmd("SET", "a", "RESET"), cmd("reset"), cmd("RESET", "extra")]
    parts += [cmd("GET", "*1\r\n$5\r\nRESET\r\n")]  # a value that looks like one
    expected = ends_of_resets(parts)
    assert len(expected) == 2
    # RESET with an argument is an error (one reply), not a RESET
    replies = [NORMAL, RESET, REAUTH, NORMAL, NORMAL, NORMAL, RESET, REAUTH, NORMAL, NORMAL]
    for step in (1, 2, 3, 5, 7, 13, 64, 301, 10_000):
        found, kinds, _ = cuts(parts, step, c)
        assert found == expected, step
        assert kinds == replies, step


def test_inline_resets_are_found_too():
    parts = [b"SET k v\r\n", b"RESET\r\n", b"PING\r\n", cmd("GET", "k"), b"reset\r\n"]
    for step in (1, 4, 100):
        assert cuts(parts, step, c=False)[0] == ends_of_resets(parts), step


def test_a_reset_after_megabytes_cut_mid_value_is_found():
    value = (b"y" * 1000 + cmd("RESET")) * 3000  # 3 MB that looks like RESETs inside
    parts = [cmd("SET", "big", value), cmd("RESET"), cmd("GET", "big")]
    found, kinds, _ = cuts(parts, 65536, c=True)  # the carry is walked part way, then on
    assert found == ends_of_resets(parts)
    assert kinds == [NORMAL, RESET, REAUTH, NORMAL]


def test_reset_answers_after_reply_off_and_is_silent_after_skip():
    # What redis-server does: RESET clears CLIENT REPLY OFF before answering +RESET, but a
    # CLIENT REPLY SKIP already in force for it swallows that reply; MULTI does not queue it.
    off = [cmd("CLIENT", "REPLY", "OFF"), cmd("SET", "a", "1"), cmd("RESET"), cmd("PING")]
    assert cuts(off, 1000, c=True)[1] == [RESET, REAUTH, NORMAL]
    skip = [cmd("CLIENT", "REPLY", "SKIP"), cmd("RESET"), cmd("PING")]
    assert cuts(skip, 1000, c=True)[1] == [REAUTH, NORMAL]
    multi = [cmd("MULTI"), cmd("GET", "a"), cmd("RESET"), cmd("PING")]
    found, kinds, scanner = cuts(multi, 1000, c=True)
    assert kinds == [NORMAL, NORMAL, RESET, REAUTH, NORMAL] and scanner.multi is None


def scan_replies(kinds: list, data: bytes, step: int) -> tuple[bytes, list[bytes]]:
    pending = Pending()
    for kind in kinds:
        pending.add(kind)
    kept: list[bytes] = []
    scanner = ReplyScanner(pending, lambda kind, frame: frame, lambda line: line, kept.append)
    out = b""
    for start in range(0, len(data), step):
        out += b"".join(scanner.feed(data[start : start + step]))
    return out, kept


def test_the_proxys_auth_reply_is_kept_from_the_client_wherever_it_is_cut():
    data = b"+OK\r\n+RESET\r\n+OK\r\n+PONG\r\n$2\r\nv1\r\n"
    for step in range(1, len(data) + 1):
        out, kept = scan_replies([NORMAL, RESET, REAUTH, NORMAL, NORMAL], data, step)
        assert out == b"+OK\r\n+RESET\r\n+PONG\r\n$2\r\nv1\r\n", step
        assert kept == [b"+OK\r\n"], step
    refused = b"+RESET\r\n-WRONGPASS invalid username-password pair\r\n"
    out, kept = scan_replies([RESET, REAUTH], refused, 3)
    assert out == b"+RESET\r\n" and kept == [b"-WRONGPASS invalid username-password pair\r\n"]


def test_the_auth_reply_after_a_monitor_stream_is_kept_too():
    data = b'+OK\r\n+1700000000.1 [0 1.2.3.4:5] "PING"\r\n+RESET\r\n+OK\r\n+PONG\r\n'
    out, kept = scan_replies([MONITOR, RESET, REAUTH, NORMAL], data, 4)
    assert out == data.replace(b"+RESET\r\n+OK\r\n", b"+RESET\r\n")
    assert kept == [b"+OK\r\n"]


# ---- through the proxy, against redis-server ----------------------------------------------
def read_until(sock: socket.socket, end: bytes, buf: bytes = b"") -> bytes:
    sock.settimeout(10)
    while not buf.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {end!r}: {buf!r}")
        buf += chunk
    return buf


def read_lines(sock: socket.socket, count: int) -> bytes:
    sock.settimeout(10)
    buf = b""
    while buf.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed after {buf!r}")
        buf += chunk
    return buf


@pytest.fixture(params=[False, True], ids=["standalone", "cluster-mode"])
def logged_in(request, redis_acl):
    """A proxy that logs in as the ACL user itself; its local port for redis_acl."""
    up = Upstream(username=ACL_USER, password=lambda: ACL_PASSWORD)
    px = open_proxy(NameDial(), up, cluster=request.param)
    yield px.add("127.0.0.1", redis_acl.port)
    px.close()
    assert px.errors == []


def test_after_reset_the_proxy_logs_in_again(logged_in):
    conn = redis.Connection(port=logged_in, socket_timeout=10)  # one connection, no AUTH
    try:
        conn.send_command("SET", "reset:k", "before")
        assert conn.read_response() == b"OK"
        conn.send_command("RESET")
        assert conn.read_response() == b"RESET"
        conn.send_command("ACL", "WHOAMI")
        assert conn.read_response() == ACL_USER.encode()  # not NOAUTH: logged in again
        conn.send_command("SET", "reset:k", "after")
        assert conn.read_response() == b"OK"
        conn.send_command("GET", "reset:k")
        assert conn.read_response() == b"after"
    finally:
        conn.disconnect()


@pytest.mark.parametrize("inline", [False, True], ids=["arrays", "inline"])
def test_pipelined_reset_ping_get_in_one_write(logged_in, inline):
    def line(*args: str) -> bytes:
        return " ".join(args).encode() + b"\r\n" if inline else cmd(*args)

    with socket.create_connection(("127.0.0.1", logged_in), timeout=10) as s:
        s.sendall(line("SET", "reset:p", "v1"))
        read_until(s, b"+OK\r\n")
        s.sendall(line("RESET") + line("PING") + line("GET", "reset:p"))
        s.sendall(line("RESET") + line("RESET") + line("ECHO", "end"))
        got = read_until(s, b"$3\r\nend\r\n")
    # one reply per request, in order; none of the proxy's AUTH replies among them
    assert got == b"+RESET\r\n+PONG\r\n$2\r\nv1\r\n+RESET\r\n+RESET\r\n$3\r\nend\r\n"


def test_reset_ends_a_subscription_and_reply_off_then_logs_in_again(logged_in):
    with socket.create_connection(("127.0.0.1", logged_in), timeout=10) as s:
        s.sendall(cmd("SUBSCRIBE", "reset:ch"))
        read_until(s, b"$8\r\nreset:ch\r\n:1\r\n")
        s.sendall(cmd("RESET") + cmd("ACL", "WHOAMI"))
        assert read_until(s, b"$3\r\napp\r\n") == b"+RESET\r\n$3\r\napp\r\n"
        s.sendall(cmd("CLIENT", "REPLY", "OFF") + cmd("RESET") + cmd("PING"))
        assert read_until(s, b"+PONG\r\n") == b"+RESET\r\n+PONG\r\n"


def test_resets_sent_before_the_upstream_is_open_wait_behind_each_login(redis_acl):
    dial = NameDial()
    up = Upstream(username=ACL_USER, password=lambda: ACL_PASSWORD)
    px = open_proxy(dial, up, cluster=False)
    try:
        port = px.add("127.0.0.1", redis_acl.port)
        dial.gate.clear()  # a slow bastion: the client's bytes wait in the backlog
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(cmd("RESET") + cmd("ACL", "WHOAMI") + cmd("RESET") + cmd("PING"))
            wait_until(lambda: any(c.backlog for c in list(px.clients)), "the backlog")
            dial.gate.set()
            got = read_lines(s, 5)
        assert got == b"+RESET\r\n$3\r\napp\r\n+RESET\r\n+PONG\r\n"
        assert px.errors == []
    finally:
        dial.gate.set()
        px.close()


def test_a_refused_login_after_reset_reaches_the_client(redis_acl):
    passwords = iter([ACL_PASSWORD, "not-it-anymore-5c"])  # rotated after the first login
    up = Upstream(username=ACL_USER, password=lambda: next(passwords))
    px = open_proxy(NameDial(), up, cluster=False)
    try:
        with socket.create_connection(("127.0.0.1", px.add("127.0.0.1", redis_acl.port))) as s:
            s.sendall(cmd("PING"))
            read_until(s, b"+PONG\r\n")
            s.sendall(cmd("RESET"))
            got = read_all(s)
        assert got.startswith(b"+RESET\r\n-ERR closeup-ops tunnel: authentication as app ")
        assert b"WRONGPASS" in got and b"after RESET" in got and b"not-it" not in got
        assert got.count(b"\r\n") == 2
    finally:
        px.close()


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster-mode"])
def test_the_clients_own_auth_is_gone_after_reset_as_on_the_server(redis_acl, cluster):
    px = open_proxy(NameDial(), Upstream(), cluster=cluster)  # no credentials in the tunnel
    try:
        with socket.create_connection(("127.0.0.1", px.add("127.0.0.1", redis_acl.port))) as s:
            s.sendall(cmd("AUTH", ACL_USER, ACL_PASSWORD) + cmd("ACL", "WHOAMI"))
            assert read_until(s, b"$3\r\napp\r\n") == b"+OK\r\n$3\r\napp\r\n"
            s.sendall(cmd("RESET") + cmd("ACL", "WHOAMI"))
            got = read_lines(s, 2)
        assert got.startswith(b"+RESET\r\n-NOAUTH "), got
        assert px.errors == []
    finally:
        px.close()
