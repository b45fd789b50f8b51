"""A password-protected plain (no TLS) cluster through the tunnel.

Without the password the tunnel cannot ask whether the cache runs in cluster mode, so it
serves it through the rewriting proxy (the client's own AUTH passes through): a plain
`ssh -L` would hand a cluster client the nodes' own addresses, which outside the VPC nobody
reaches. With the password the proxy logs in itself, and again after a client's RESET."""

from __future__ import annotations

import pytest
import redis
from helpers.bastion import HeldTunnel, bastion_env
from helpers.common import PASSWORD, server_env

from closeup_ops.local.cluster import start_cluster
from closeup_ops.local.servers import redis_cli


@pytest.fixture(scope="module")
def locked_cluster(tmp_path_factory):
    """The 3-primary cluster with replicas, every node behind requirepass."""
    c = start_cluster(tmp_path_factory.mktemp("locked-cluster"), 3, 1)
    try:
        for node in c.nodes:
            redis_cli(node, "CONFIG", "SET", "masterauth", PASSWORD)  # replicas keep syncing
        for node in c.nodes:
            redis_cli(node, "CONFIG", "SET", "requirepass", PASSWORD)
            node.password = PASSWORD  # for redis_cli from here on
        yield c
    finally:
        c.stop()


def test_cluster_behind_auth_the_tunnel_lacks_gets_the_rewriting_proxy(locked_cluster, sshd):
    real = {n.port for n in locked_cluster.nodes}
    primaries = [n.port for n in locked_cluster.primaries()]
    before = {p: sshd.forwards_to(p) for p in primaries}
    held = HeldTunnel({**server_env(locked_cluster.entry), **bastion_env(sshd)})
    rc = None
    try:
        held.wait_for_err("wants AUTH and the tunnel has no credentials")
        assert held.doc["proxied"] is True
        rc = redis.RedisCluster(
            host="127.0.0.1", port=held.port, password=PASSWORD, socket_timeout=10
        )
        keys = [f"locked:{i}" for i in range(60)]
        for key in keys:
            rc.set(key, key, ex=120)
        assert [rc.get(key) for key in keys] == [key.encode() for key in keys]
        # only local listeners were handed out, never a node's own address
        seen = {(n.host, n.port) for n in rc.get_nodes()}
        assert len(seen) >= 3 and all(h == "127.0.0.1" and p not in real for h, p in seen), seen
        # a MOVED from the entry names another local listener
        plain = redis.Redis(port=held.port, password=PASSWORD, socket_timeout=10)
        moved = []
        for key in keys:
            try:
                plain.get(key)
            except redis.ResponseError as exc:
                moved.append(int(str(exc).rsplit(":", 1)[1]))
        plain.close()
        assert moved and not set(moved) & real
        # every primary was reached, and through the bastion
        assert all(sshd.forwards_to(p) > before[p] for p in primaries), before
    finally:
        if rc is not None:
            rc.close()
        assert held.interrupt() == 0


def test_with_the_password_the_tunnel_logs_in_again_after_reset(locked_cluster, sshd):
    env = {**server_env(locked_cluster.entry, REDIS_PASSWORD=PASSWORD), **bastion_env(sshd)}
    held = HeldTunnel(env)
    try:
        assert held.doc["cluster"] is True
        conn = redis.Connection(port=held.port, socket_timeout=10)  # sends no AUTH
        conn.send_command("RESET")
        assert conn.read_response() == b"RESET"
        conn.send_command("ACL", "WHOAMI")
        assert conn.read_response() == b"default"  # logged in again, not -NOAUTH
        conn.send_command("CLUSTER", "MYID")
        assert len(conn.read_response()) == 40
        conn.disconnect()
    finally:
        assert held.interrupt() == 0
