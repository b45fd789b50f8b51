"""An IPv6 cache (ElastiCache's `ipv6` and `dual_stack` network types) through the proxy: a
real cluster on ::1 whose CLUSTER SLOTS, CLUSTER NODES and -MOVED name IPv6 addresses
(`::1:30001`: the port after the last colon). Clients on 127.0.0.1 and on ::1."""

from __future__ import annotations

import socket

import pytest
import redis
from helpers.resp_proxy import open_proxy

from closeup_ops.local.cluster import start_cluster

KEYS = {f"v6:{i}": f"value-{i}" for i in range(60)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory.mktemp("ipv6-cluster"), 3, 1, bind="::1")
    yield c
    c.stop()


def dial(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=5)  # the bastion's side: ::1


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1"])
def test_an_ipv6_cluster_is_served_with_every_address_rewritten(cluster, bind):
    px = open_proxy(dial, bind=bind)
    try:
        entry = px.add("::1", cluster.nodes[0].port)
        real = {n.port for n in cluster.nodes}
        local = redis.Redis(host=bind, port=entry, socket_timeout=10, protocol=2)
        slots = local.execute_command("CLUSTER", "SLOTS")
        named = {(n[0], n[1]) for r in slots for n in r[2:]}
        assert {h for h, _ in named} == {bind.encode()}, named
        assert {p for _, p in named} <= set(px.nodes().values()) and not {
            p for _, p in named
        } & real
        text = local.execute_command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else text
        addresses = [line.split()[1] for line in text.splitlines() if line.strip()]
        assert len(addresses) == 6 and all(a.startswith(f"{bind}:") for a in addresses), text
        rc = redis.RedisCluster(host=bind, port=entry, socket_timeout=10)
        try:
            for key, value in KEYS.items():
                rc.set(key, value, ex=120)
            assert all(rc.get(k) == v.encode() for k, v in KEYS.items())
        finally:
            rc.close()
        moved = set()
        for key in KEYS:
            try:
                local.get(key)
            except redis.ResponseError as exc:
                host, _, port = str(exc).split()[-1].rpartition(":")
                moved.add(host)
                other = redis.Redis(host=host, port=int(port), socket_timeout=10)
                assert other.get(key) == KEYS[key].encode()
                other.close()
        assert moved == {bind}
        local.close()
        for node in cluster.primaries():  # the test's own check, straight to each primary
            direct = redis.Redis(host="::1", port=node.port)
            assert list(direct.scan_iter(match="v6:*", count=1000)), node.port
            direct.close()
    finally:
        px.close()
    assert px.errors == []
