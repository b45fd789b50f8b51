"""The local RESP proxy's faults on real standalone servers: a TLS client on the plain
local side, a node that dies, a node that cannot be reached, close(), a new dialer."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
import redis
from helpers.resp_proxy import NameDial, open_proxy, read_all, wait_until

from closeup_ops.connect.tunnel.proxy import TLS_HINT, NodeProxy, Upstream
from closeup_ops.local.servers import free_port, start_redis


@pytest.fixture
def servers(tmp_path):
    started = [start_redis(tmp_path / "a"), start_redis(tmp_path / "b")]
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def proxy(servers):
    dial = NameDial()
    px = open_proxy(dial, cluster=False)
    px.dial_log = dial
    px.ports = [px.add("127.0.0.1", s.port) for s in servers]
    yield px
    px.close()
    assert px.errors == []


def test_standalone_traffic_passes_through(servers, proxy):
    r = redis.Redis(port=proxy.ports[0], socket_timeout=10)
    r.set("k", "v")
    assert redis.Redis(port=servers[0].port).get("k") == b"v"
    assert proxy.add("127.0.0.1", servers[0].port) == proxy.ports[0]  # idempotent
    pairs = zip(servers, proxy.ports, strict=True)
    assert proxy.nodes() == {("127.0.0.1", s.port): p for s, p in pairs}


def test_a_client_that_sends_then_half_closes_still_gets_its_replies(proxy):
    proxy.dial_log.gate.clear()  # the bastion is slow to connect
    with socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=10) as raw:
        raw.sendall(b"SET half closed\r\nGET half\r\n")
        raw.shutdown(socket.SHUT_WR)  # before the upstream connection is even open
        wait_until(lambda: any(c.eof_pending for c in proxy.clients), "the proxy to see EOF")
        proxy.dial_log.gate.set()
        assert read_all(raw) == b"+OK\r\n$6\r\nclosed\r\n"


def test_a_tls_client_hello_gets_an_error_line_and_is_closed(proxy):
    with socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=10) as raw:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no hang: the timeout is 10 s
            ctx.wrap_socket(raw, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40)
        assert read_all(raw) == TLS_HINT
    assert b"REDIS_TLS=false" in TLS_HINT and TLS_HINT.startswith(b"-ERR ")
    client = redis.Redis(port=proxy.ports[0], ssl=True, ssl_cert_reqs="none", socket_timeout=10)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - started < 10


def test_a_node_that_dies_closes_only_its_clients(servers, proxy):
    on_a = [redis.Connection(port=proxy.ports[0], socket_timeout=10) for _ in range(2)]
    on_b = redis.Connection(port=proxy.ports[1], socket_timeout=10)
    for conn in [*on_a, on_b]:
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", "PONG", True)
    servers[0].kill()
    for conn in on_a:
        with pytest.raises(redis.ConnectionError):
            conn.send_command("PING")
            conn.read_response()
    on_b.send_command("PING")
    assert on_b.read_response() in (b"PONG", "PONG", True)
    with socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=10) as raw:
        line = read_all(raw)
    prefix = b"-ERR closeup-ops tunnel: cannot reach node 127.0.0.1:%d: " % servers[0].port
    assert line.startswith(prefix)
    assert b"refused" in line.lower() and line.endswith(b"\r\n") and line.count(b"\r\n") == 1


def test_a_dial_failure_reaches_the_client_as_one_error_line(proxy):
    proxy.dial_log.refuse = "bastion says: connect failed (administratively prohibited)"
    r = redis.Redis(port=proxy.ports[1], socket_timeout=10)
    with pytest.raises(redis.ResponseError, match="cannot reach node 127.0.0.1:.*prohibited"):
        r.ping()


def test_a_password_that_cannot_be_made_reaches_the_client(servers):
    def token() -> str:
        raise RuntimeError("Unable to locate credentials")

    px = open_proxy(NameDial(), Upstream(password=token), cluster=False)
    try:
        r = redis.Redis(port=px.add("127.0.0.1", servers[0].port), socket_timeout=10)
        with pytest.raises(redis.ResponseError, match="no password for the node: Unable to"):
            r.ping()
    finally:
        px.close()


def test_set_dial_keeps_listeners_and_new_connections_use_it(servers, proxy):
    before = proxy.nodes()
    kept = redis.Connection(port=proxy.ports[0], socket_timeout=10)
    kept.send_command("PING")
    kept.read_response()
    second = NameDial()
    proxy.set_dial(second)
    assert redis.Redis(port=proxy.ports[0], socket_timeout=10).ping()
    assert second.calls == [("127.0.0.1", servers[0].port)]
    assert proxy.nodes() == before
    kept.send_command("PING")
    assert kept.read_response() in (b"PONG", "PONG", True)


def test_a_local_port_can_be_chosen_and_close_ends_everything(servers):
    port = free_port()
    px = NodeProxy(NameDial(), Upstream(), cluster=False)
    assert px.add("127.0.0.1", servers[1].port, local_port=port) == port  # before start()
    px.start()
    conn = redis.Connection(port=port, socket_timeout=10)
    conn.send_command("PING")
    conn.read_response()
    thread = px._thread
    px.close()
    assert not thread.is_alive() and px.errors == []
    with pytest.raises(redis.ConnectionError):
        conn.send_command("PING")
        conn.read_response()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    px.close()  # twice is fine


def test_announce_names_each_new_listener(servers):
    said: list[str] = []
    px = open_proxy(NameDial(), cluster=False, announce=said.append)
    try:
        local = px.add("127.0.0.1", servers[0].port)
        wait_until(lambda: said, "announce")
        assert said == [f"127.0.0.1:{local} -> 127.0.0.1:{servers[0].port}"]
    finally:
        px.close()
