"""Client-side caching through the proxy (redis-py's cache, Lettuce's and node-redis's
client-side caching): CLIENT TRACKING's invalidations reach the client, in RESP3 as pushes
on the tracking connection and in RESP2 on the REDIRECT connection, and the reply pairing
still rewrites topology answers after them. Real cluster; each local connection has its own
upstream connection, so CLIENT ID and REDIRECT name the server's own clients."""

from __future__ import annotations

import pytest
import redis
from helpers.resp_proxy import Conn, cluster_proxy, cmd, wait_until

from closeup_ops.local.cluster import start_cluster

NAMES = [f"node{i}.track.closeup.test" for i in range(6)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory.mktemp("proxy-tracking"), 3, 1, hostnames=NAMES)
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster):
    yield from cluster_proxy(NAMES, cluster)


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
    c = Conn(local_for(cluster, proxy, port))
    try:
        c.send(cmd("HELLO", "3"), cmd("CLIENT", "TRACKING", "ON"), cmd("GET", key))
        assert c.read()[0][b"proto"] == 3
        assert c.read()[0] == b"OK"
        assert c.read()[0] == b"v1"
        # The push arrives while two requests wait for replies (a blocked BLPOP, then
        # CLUSTER SLOTS): it must answer neither, or the topology answer goes out as is.
        c.send(cmd("BLPOP", queue, "20"), cmd("CLUSTER", "SLOTS"))
        wait_until(lambda: writer.info("clients")["blocked_clients"] == 1, "BLPOP blocked")
        writer.set(key, "v2")  # straight to the node: the server sends the invalidation
        writer.rpush(queue, "job")  # then BLPOP's reply
        push = c.read()[0]
        assert push == [b"invalidate", [key.encode()]], push
        assert c.read()[0] == [queue.encode(), b"job"]
        assert_topology_is_local(c.read()[0], proxy)
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
    sub, tracked = Conn(local), Conn(local)
    try:
        sub.send(cmd("CLIENT", "ID"), cmd("SUBSCRIBE", "__redis__:invalidate"))
        sub_id = sub.read()[0]
        assert sub.read()[0] == [b"subscribe", b"__redis__:invalidate", 1]
        # the id is the server's own: the node lists that client (the proxy's upstream)
        assert f"id={sub_id} " in writer.execute_command("CLIENT", "LIST").decode()
        tracked.send(cmd("CLIENT", "TRACKING", "ON", "REDIRECT", str(sub_id)), cmd("GET", key))
        assert tracked.read()[0] == b"OK"
        assert tracked.read()[0] == b"v1"
        writer.set(key, "v2")
        assert sub.read()[0] == [b"message", b"__redis__:invalidate", [key.encode()]]
        tracked.send(cmd("CLUSTER", "SLOTS"))
        assert_topology_is_local(tracked.read()[0], proxy)
    finally:
        sub.close()
        tracked.close()
        writer.delete(key)
        writer.close()
