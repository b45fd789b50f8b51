"""Who can use a tunnel: clients that reach it by another address than 127.0.0.1 (a second
loopback address, `--announce` for apps in containers), and many connections at once under
a low open-files limit. Real cluster, real OpenSSH sshd on loopback."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import redis
from helpers.bastion import HeldTunnel, bastion_env
from helpers.common import server_env

from closeup_ops.connect.tunnel.proxy import NodeProxy, Upstream


def env_for(server, sshd, **more):
    return {**server_env(server), **bastion_env(sshd), **more}


def slot_hosts(port: int, host: str = "127.0.0.1") -> set[bytes]:
    """Every address CLUSTER SLOTS names (primaries and replicas), asked on `host`:`port`."""
    plain = redis.Redis(host=host, port=port, socket_timeout=10)
    try:
        slots = plain.execute_command("CLUSTER", "SLOTS")
    finally:
        plain.close()
    hosts = {node[0] for slot_range in slots for node in slot_range[2:]}
    return {h if isinstance(h, bytes) else h.encode() for h in hosts}


def write_everywhere(client, prefix: str, n: int = 60) -> dict[str, str]:
    keys = {f"{prefix}:{i}": f"v{i}" for i in range(n)}
    for key, value in keys.items():
        client.set(key, value, ex=120)
    assert all(client.get(key) == value.encode() for key, value in keys.items())
    return keys


def on_every_primary(cluster, prefix: str) -> bool:
    for node in cluster.primaries():
        direct = redis.Redis(host=node.host, port=node.port)
        try:
            if not list(direct.scan_iter(match=f"{prefix}:*", count=1000)):
                return False
        finally:
            direct.close()
    return True


def test_a_tunnel_on_a_second_loopback_address_hands_out_that_address(redis_cluster, sshd):
    """--bind 127.0.0.2: every listener is on 127.0.0.2 only, so a node address that said
    127.0.0.1 would be refused; the replies name the address the client dialled."""
    held = HeldTunnel(env_for(redis_cluster.entry, sshd), "--bind", "127.0.0.2")
    try:
        assert held.doc["exports"]["REDIS_HOST"] == "127.0.0.2"
        assert slot_hosts(held.port, "127.0.0.2") == {b"127.0.0.2"}
        rc = redis.RedisCluster(host="127.0.0.2", port=held.port, socket_timeout=10)
        try:
            write_everywhere(rc, "reach:second")
            assert {n.host for n in rc.get_nodes()} == {"127.0.0.2"}
        finally:
            rc.close()
        assert on_every_primary(redis_cluster, "reach:second")
        # a plain client's MOVED names 127.0.0.2 too, and that listener serves the key
        plain = redis.Redis(host="127.0.0.2", port=held.port, socket_timeout=10)
        moved = 0
        for i in range(60):
            try:
                plain.get(f"reach:second:{i}")
            except redis.ResponseError as exc:
                host, port = str(exc).split()[-1].rsplit(":", 1)
                assert host == "127.0.0.2", str(exc)
                other = redis.Redis(host=host, port=int(port), socket_timeout=10)
                assert other.get(f"reach:second:{i}") == f"v{i}".encode()
                other.close()
                moved += 1
        plain.close()
        assert moved > 0
    finally:
        assert held.interrupt() == 0


def test_announce_puts_that_name_in_every_reply_and_in_the_exports(redis_cluster, sshd):
    """--announce NAME (host.docker.internal for an app in a container): the cluster's
    nodes are handed out under that name, and the export lines use it."""
    held = HeldTunnel(env_for(redis_cluster.entry, sshd), "--announce", "localhost")
    try:
        exports = held.doc["exports"]
        assert exports["REDIS_HOST"] == "localhost"
        assert exports["REDIS_URL"] == f"redis://localhost:{held.port}"
        assert {row["local"].rsplit(":", 1)[0] for row in held.doc["nodes"]} == {"localhost"}
        assert slot_hosts(held.port) == {b"localhost"}
        rc = redis.RedisCluster(host="localhost", port=held.port, socket_timeout=10)
        try:
            write_everywhere(rc, "reach:announce")  # (redis-py itself turns it into an IP)
        finally:
            rc.close()
        assert on_every_primary(redis_cluster, "reach:announce")
        plain = redis.Redis(port=held.port, socket_timeout=10)
        try:
            nodes = plain.execute_command("CLUSTER", "NODES")
            text = nodes if isinstance(nodes, str) else str(nodes)
            assert "localhost:" in text and "127.0.0.1:" not in text, text
            moved = set()
            for i in range(60):
                try:
                    plain.get(f"reach:announce:{i}")
                except redis.ResponseError as exc:
                    moved.add(str(exc).split()[-1].rsplit(":", 1)[0])
            assert moved == {"localhost"}
        finally:
            plain.close()
    finally:
        assert held.interrupt() == 0


@pytest.mark.parametrize(
    "value, shown",
    [
        ("two words", "'two words'"),
        ("bad\r\nname", None),
        ("cache.local:6379", "the port"),
        ("redis://app:hunter2-secret@cache.local", "that value"),
    ],
)
def test_announce_must_be_a_host_alone(cli, redis_plain, sshd, value, shown):
    r = cli("tunnel", "--announce", value, "--", "true", env=env_for(redis_plain, sshd))
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and "--announce" in r.err
    assert "hunter2" not in r.err and "Traceback" not in r.err
    if shown:
        assert shown in r.err


def test_address_for_a_client_is_the_address_it_dialled_or_the_announced_one():
    proxy = NodeProxy(lambda host, port: None, Upstream(), cluster=True, bind="0.0.0.0")
    assert proxy.address_for(("127.0.0.3", 40001)) == b"127.0.0.3"
    assert proxy.address_for(("192.168.1.20", 40001)) == b"192.168.1.20"
    # an IPv4 client on a dual-stack listener, and an IPv6 one with a zone
    assert proxy.address_for(("::ffff:172.17.0.1", 40001, 0, 0)) == b"172.17.0.1"
    assert proxy.address_for(("fe80::1%eth0", 40001, 0, 2)) == b"fe80::1"
    assert proxy.address_for(("::1", 40001, 0, 0)) == b"::1"
    named = NodeProxy(lambda h, p: None, Upstream(), cluster=True, announce_host="dev.internal")
    assert named.address_for(("127.0.0.1", 40001)) == b"dev.internal"


# --- open files ------------------------------------------------------------------------------

LOW = 64  # a soft limit like macOS's 256, low enough to run out with a few dozen clients


def test_more_open_files_raises_the_soft_limit_up_to_the_hard_one():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    code = (
        "import resource; from closeup_ops.connect.tunnel.nodes import more_open_files; "
        "got = more_open_files(); print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [
            "prlimit",
            f"--nofile={LOW}:{hard if hard != resource.RLIM_INFINITY else 'unlimited'}",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert [int(x) for x in out] == [expected, expected]


def test_many_clients_at_once_under_a_low_open_files_limit(redis_cluster, sshd):
    """150 clients connected at once to a tunnel started with a soft limit of 64 open files:
    each costs the proxy 2 and ssh 1, so without raising the limit most would be refused."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = f"--nofile={LOW}:{hard if hard != resource.RLIM_INFINITY else 'unlimited'}"
    held = HeldTunnel(env_for(redis_cluster.entry, sshd), prefix=["prlimit", limit])
    clients = []
    try:
        for _ in range(150):
            c = redis.Redis(port=held.port, socket_timeout=20, single_connection_client=True)
            clients.append(c)
        replies = [c.execute_command("CLIENT", "ID") for c in clients]  # all held open
        assert len(set(replies)) == 150, replies  # ids are per node; 150 on the entry node
    finally:
        for c in clients:
            c.close()
        assert held.interrupt() == 0


def test_a_tunnel_on_ipv6_loopback_serves_a_cluster_client(redis_cluster, sshd):
    """--bind ::1: the listeners, the free-port check, the replies and the URL are IPv6."""
    held = HeldTunnel(env_for(redis_cluster.entry, sshd), "--bind", "::1")
    try:
        exports = held.doc["exports"]
        assert exports["REDIS_HOST"] == "::1"
        # the test servers listen on 127.0.0.1 only: the cache port is free on ::1
        assert held.port == redis_cluster.entry.port
        assert exports["REDIS_URL"] == f"redis://[::1]:{held.port}"
        assert slot_hosts(held.port, "::1") == {b"::1"}
        rc = redis.RedisCluster(host="::1", port=held.port, socket_timeout=10)
        try:
            write_everywhere(rc, "reach:v6")
        finally:
            rc.close()
        assert on_every_primary(redis_cluster, "reach:v6")
    finally:
        assert held.interrupt() == 0
