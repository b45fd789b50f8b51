"""Backpressure through the proxy, on real servers: a client that asks for much more than it
reads (a slow consumer, a stalled app) must not make the proxy hold it all in memory, and a
client that sends much more than the server takes must not either. What is held stays near
the 1 MiB high-water mark per side, and every byte still arrives, in order."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest
import redis
from helpers.resp_proxy import NameDial, open_proxy, wait_until

from closeup_ops.connect.tunnel.upstream import HIGH_WATER
from closeup_ops.local.servers import start_redis

VALUE = 4 << 20  # 4 MiB per value
COUNT = 12  # 48 MiB asked for in one go


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_redis(tmp_path_factory.mktemp("backpressure"))
    yield s
    s.stop()


@pytest.fixture
def proxy(server):
    px = open_proxy(NameDial(), cluster=False)
    px.local = px.add("127.0.0.1", server.port)
    yield px
    px.close()
    assert px.errors == []


def held_by_proxy(px) -> int:
    """Bytes the proxy has queued towards the client (its transport's write buffer)."""
    return sum(c.transport.get_write_buffer_size() for c in list(px.clients))


def test_a_client_that_does_not_read_is_not_buffered_whole(server, proxy):
    direct = redis.Redis(port=server.port)
    value = bytes(range(256)) * (VALUE // 256)
    direct.set("bp:big", value)
    sock = socket.create_connection(("127.0.0.1", proxy.local), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    try:
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$6\r\nbp:big\r\n" * COUNT)
        # the client reads nothing: the proxy stops reading from the server once its own
        # queue towards the client passes the high-water mark
        wait_until(lambda: proxy.clients, "the client is served")
        client = next(iter(proxy.clients))
        wait_until(lambda: client.upstream and not client.upstream.transport.is_reading(), "paused")
        # a few reads' worth may arrive between the mark and the pause
        assert held_by_proxy(proxy) < HIGH_WATER + (2 << 20), held_by_proxy(proxy)
        # the server's side of it waits in the server's output buffer, not in the proxy
        waiting = [c for c in direct.client_list() if c.get("cmd") == "get" and int(c["omem"]) > 0]
        assert waiting, direct.client_list()
        # now read it all: every reply arrives whole and in order
        expected = (b"$%d\r\n" % VALUE + value + b"\r\n") * COUNT
        got = bytearray()
        while len(got) < len(expected):
            chunk = sock.recv(1 << 20)
            assert chunk, "closed early"
            got += chunk
        assert bytes(got) == expected
    finally:
        sock.close()
        direct.delete("bp:big")
        direct.close()


def test_a_client_that_sends_faster_than_the_server_takes_is_paused_too(server, proxy):
    """The request side: a pipeline of big SETs to a server that reads nothing (stopped
    with SIGSTOP; CLIENT PAUSE would not do: a paused server still reads requests into its
    query buffer); the proxy stops reading the client once its queue towards the server is
    full, so the client's 48 MiB wait in the client (more than every socket buffer between
    them holds)."""
    direct = redis.Redis(port=server.port)
    value = b"x" * VALUE
    request = b"*3\r\n$3\r\nSET\r\n$6\r\nbp:req\r\n$%d\r\n%s\r\n" % (VALUE, value)
    sock = socket.create_connection(("127.0.0.1", proxy.local), timeout=30)
    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
    assert sock.recv(100) == b"+PONG\r\n"  # connected upstream before the pause
    os.kill(server.pid, signal.SIGSTOP)  # our own server, by PID
    sent = []
    sender = threading.Thread(
        target=lambda: sent.append(sock.sendall(request * COUNT)), daemon=True
    )
    try:
        sender.start()
        client = next(iter(proxy.clients))
        wait_until(lambda: not client.transport.is_reading(), "client side paused", 20)
        queued = client.upstream.transport.get_write_buffer_size() + client.backlog_size
        assert queued < HIGH_WATER + (2 << 20), queued
        assert not sent  # the client is still blocked in sendall: its bytes wait with it
    finally:
        os.kill(server.pid, signal.SIGCONT)
    sender.join(30)
    assert sent == [None]
    replies = b""
    while replies.count(b"+OK\r\n") < COUNT:
        chunk = sock.recv(65536)
        assert chunk, "closed early"
        replies += chunk
    assert replies == b"+OK\r\n" * COUNT
    assert direct.strlen("bp:req") == VALUE
    sock.close()
    direct.delete("bp:req")
    direct.close()


def test_a_client_gone_mid_reply_closes_its_server_connection(server, proxy):
    """An app killed while a big reply streams to it: the proxy drops that connection to the
    server (no leak on the cache's maxclients), and goes on serving others."""
    direct = redis.Redis(port=server.port)
    direct.set("bp:gone", b"y" * VALUE)
    sock = socket.create_connection(("127.0.0.1", proxy.local), timeout=30)
    try:
        sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$7\r\nbp-gone\r\n")
        assert sock.recv(100) == b"+OK\r\n"
        assert any(c["name"] == "bp-gone" for c in direct.client_list())
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$7\r\nbp:gone\r\n" * 4)
        assert sock.recv(65536)  # the reply has started
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, as when the process dies with unread data
    wait_until(lambda: not any(c["name"] == "bp-gone" for c in direct.client_list()), "gone", 10)
    wait_until(lambda: not proxy.clients, "the proxy forgot the client", 10)
    again = redis.Redis(port=proxy.local, socket_timeout=10)
    assert again.strlen("bp:gone") == VALUE
    again.close()
    direct.delete("bp:gone")
    direct.close()
