"""Client-side caching through the proxy (redis-py's cache, Lettuce's and node-redis's
client-side caching): CLIENT TRACKING's invalidations reach the client, in RESP3 as pushes
on the tracking connection and in RESP2 on the REDIRECT connection, and the reply pairing
still rewrites topology answers after them. Real cluster; each local connection has its own
upstream connection, so CLIENT ID and REDIRECT name the server's own clients."""

from __future__ import annotations

import socket

import hiredis
import pytest
import redis
from helpers.resp_proxy import NameDial, open_proxy, wait_until

from closeup_ops.local.cluster import start_cluster

NAMES = [f"node{i}.track.closeup.test" for i in range(6)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory.mktemp("proxy-tracking"), 3, 1, hostnames=NAMES)
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster):
    px = open_proxy(NameDial(NAMES))
    yield px
    px.close()
    assert px.errors == []


class Raw:
    """A client socket that sends commands and reads whole RESP2/RESP3 replies (hiredis)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()

    def send(self, *commands: tuple) -> None:
        out = b""
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def read(self):
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            chunk = self.sock.recv(65536)
            assert chunk, "closed"
            self.reader.feed(chunk)

    def close(self) -> None:
        self.sock.close()


def owner_port(cluster, key: str) -> int:
    r = redis.Redis(port=cluster.nodes[0].port, socket_timeout=10)
    slot = r.execute_command("CLUSTER", "KEYSLOT", key)
    for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(primary[1])
    raise AssertionError(slot)


def local_for(cluster, px, port: int) -> int:
    return px.add(NAMES[[n.port for n in cluster.nodes].index(port)], port)


def assert_topology_is_local(reply, px) -> None:
    hosts = {node[0] for r in reply for node in r[2:]}
    ports = {node[1] for r in reply for node in r[2:]}
    assert hosts == {b"127.0.0.1"}, hosts
    assert ports <= set(px.nodes().values()), ports


def test_resp3_invalidation_push_reaches_the_tracking_client(cluster, proxy):
    key, queue = "{track3}:k", "{track3}:queue"  # one slot, one node
    port = owner_port(cluster, key)
    writer = redis.Redis(port=port, socket_timeout=10)
    writer.set(key, "v1")
    c = Raw(local_for(cluster, proxy, port))
    try:
        c.send(("HELLO", "3"), ("CLIENT", "TRACKING", "ON"), ("GET", key))
        assert c.read()[b"proto"] == 3
        assert c.read() == b"OK"
        assert c.read() == b"v1"
        # The push arrives while two requests wait for replies (a blocked BLPOP, then
        # CLUSTER SLOTS): it must answer neither, or the topology answer goes out as is.
        c.send(("BLPOP", queue, "20"), ("CLUSTER", "SLOTS"))
        wait_until(lambda: writer.info("clients")["blocked_clients"] == 1, "BLPOP blocked")
        writer.set(key, "v2")  # straight to the node: the server sends the invalidation
        writer.rpush(queue, "job")  # then BLPOP's reply
        push = c.read()
        assert push == [b"invalidate", [key.encode()]], push
        assert c.read() == [queue.encode(), b"job"]
        assert_topology_is_local(c.read(), proxy)
    finally:
        c.close()
        writer.delete(key, queue)
        writer.close()


def test_resp2_redirect_invalidations_reach_the_subscribed_client(cluster, proxy):
    key = "track:r2:1"
    port = owner_port(cluster, key)
    local = local_for(cluster, proxy, port)
    writer = redis.Redis(port=port, socket_timeout=10)
    writer.set(key, "v1")
    sub, tracked = Raw(local), Raw(local)
    try:
        sub.send(("CLIENT", "ID"), ("SUBSCRIBE", "__redis__:invalidate"))
        sub_id = sub.read()
        assert sub.read() == [b"subscribe", b"__redis__:invalidate", 1]
        # the id is the server's own: the node lists that client (the proxy's upstream)
        assert f"id={sub_id} " in writer.execute_command("CLIENT", "LIST").decode()
        tracked.send(("CLIENT", "TRACKING", "ON", "REDIRECT", sub_id), ("GET", key))
        assert tracked.read() == b"OK"
        assert tracked.read() == b"v1"
        writer.set(key, "v2")
        assert sub.read() == [b"message", b"__redis__:invalidate", [key.encode()]]
        tracked.send(("CLUSTER", "SLOTS"))
        assert_topology_is_local(tracked.read(), proxy)
    finally:
        sub.close()
        tracked.close()
        writer.delete(key)
        writer.close()
