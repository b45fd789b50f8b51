"""The local RESP proxy against a real TLS cluster whose nodes announce hostnames with a
wildcard certificate and require an ACL user (as ElastiCache with in-transit encryption).

The certificate names only `*.tls.closeup.test`: a connection verified against an IP fails,
so only the proxy's name verification passes. The `default` user is off."""

from __future__ import annotations

import pytest
import redis
from helpers.resp_proxy import NameDial, open_proxy

from closeup_ops.connect.tunnel.proxy import Upstream
from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.cluster import start_cluster
from closeup_ops.local.servers import redis_cli

NAMES = [f"node{i}.tls.closeup.test" for i in range(6)]
USER, SECRET = "app", "app-secret-0f9e8d"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("proxy-tls")
    files = make_tls_files(workdir / "tls", names=("*.tls.closeup.test",), ips=())
    c = start_cluster(workdir, 3, 1, tls=files, hostnames=NAMES, preferred_endpoint="hostname")
    try:
        for node in c.nodes:
            redis_cli(node, "ACL", "SETUSER", USER, "on", f">{SECRET}", "~*", "&*", "+@all")
            redis_cli(node, "CONFIG", "SET", "masteruser", USER)
            redis_cli(node, "CONFIG", "SET", "masterauth", SECRET)
        for node in c.nodes:
            redis_cli(node, "ACL", "SETUSER", "default", "off")
        c.ca = str(files.ca)
        yield c
    finally:
        c.stop()


def direct(cluster, port: int) -> redis.Redis:
    """The test's own check on a node (by IP, so the hostname check is off here)."""
    return redis.Redis(
        port=port,
        ssl=True,
        ssl_ca_certs=cluster.ca,
        ssl_check_hostname=False,
        username=USER,
        password=SECRET,
        socket_timeout=10,
    )


def upstream(cluster, **kw) -> Upstream:
    return Upstream(tls=True, ca_cert=cluster.ca, **kw)


def test_the_proxy_verifies_names_and_authenticates_so_the_client_sends_nothing(cluster):
    calls = []

    def password() -> str:
        calls.append(1)
        return SECRET

    dial, said = NameDial(NAMES), []
    # server_name is only for nodes known by IP: a named node is verified against its name
    up = upstream(cluster, username=USER, password=password, server_name="cfg.elsewhere.test")
    px = open_proxy(dial, up, announce=said.append)
    try:
        entry = px.add(NAMES[0], cluster.nodes[0].port)
        rc = redis.RedisCluster(host="127.0.0.1", port=entry, socket_timeout=10)
        keys = {f"tls:{i}": f"v{i}" for i in range(200)}
        for key, value in keys.items():
            rc.set(key, value)
        assert all(rc.get(key) == value.encode() for key, value in keys.items())
        assert {n.port for n in rc.get_nodes()} <= set(px.nodes().values())
        r0 = direct(cluster, cluster.nodes[0].port)
        slots = r0.execute_command("CLUSTER", "SLOTS")
        for key, value in keys.items():
            slot = r0.execute_command("CLUSTER", "KEYSLOT", key)
            port = next(int(s[2][1]) for s in slots if s[0] <= slot <= s[1])
            assert direct(cluster, port).get(key) == value.encode()
        shards = redis.Connection(port=entry, protocol=3, socket_timeout=10)
        shards.send_command("CLUSTER", "SHARDS")
        for shard in shards.read_response():
            for node in shard[b"nodes"]:  # TLS-only nodes: the local side is plain, so `port`
                assert node[b"port"] in set(px.nodes().values())
                assert node[b"hostname"] == node[b"endpoint"] == b"127.0.0.1"
        shards.disconnect()
        rc.close()
        assert dial.calls and {host for host, _ in dial.calls} <= set(NAMES)
        assert len(calls) == len(dial.calls)  # a fresh password per upstream connection
        assert said and not any(SECRET in line for line in said) and px.errors == []
    finally:
        px.close()


def test_an_ip_only_node_verifies_against_server_name_and_fails_against_the_ip(cluster):
    port = cluster.nodes[0].port
    creds = dict(username=USER, password=lambda: SECRET)
    px = open_proxy(NameDial(), upstream(cluster, **creds))
    named = open_proxy(NameDial(), upstream(cluster, server_name=NAMES[0], **creds))
    unchecked = open_proxy(NameDial(), Upstream(tls=True, insecure=True, **creds))  # asked for
    try:
        bad = redis.Redis(port=px.add("127.0.0.1", port), socket_timeout=10)
        with pytest.raises(redis.ResponseError) as err:
            bad.ping()
        text = str(err.value)
        assert f"cannot reach node 127.0.0.1:{port}" in text
        assert "TLS certificate not accepted" in text and "127.0.0.1" in text
        assert redis.Redis(port=named.add("127.0.0.1", port), socket_timeout=10).ping()
        assert redis.Redis(port=unchecked.add("127.0.0.1", port), socket_timeout=10).ping()
    finally:
        px.close()
        named.close()
        unchecked.close()


def test_a_refused_password_is_reported_without_the_password(cluster):
    wrong = "not-the-password-77a1"
    px = open_proxy(NameDial(NAMES), upstream(cluster, username=USER, password=lambda: wrong))
    try:
        r = redis.Redis(port=px.add(NAMES[1], cluster.nodes[1].port), socket_timeout=10)
        with pytest.raises(redis.ResponseError) as err:
            r.ping()
        text = str(err.value)
        assert "authentication as app refused" in text and "WRONGPASS" in text
        assert wrong not in text and NAMES[1] in text
    finally:
        px.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_clients_own_auth_and_hello_auth_pass_through(cluster, protocol):
    px = open_proxy(NameDial(NAMES), upstream(cluster))  # the tunnel holds no credentials
    try:
        entry = px.add(NAMES[0], cluster.nodes[0].port)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=entry, protocol=protocol, socket_timeout=10).ping()
        rc = redis.RedisCluster(
            host="127.0.0.1",
            port=entry,
            username=USER,
            password=SECRET,
            protocol=protocol,
            socket_timeout=10,
        )
        for i in range(50):
            rc.set(f"own-auth:{i}", i)
        assert rc.get("own-auth:49") == b"49"
        rc.close()
        assert px.errors == []
    finally:
        px.close()


def test_after_a_reset_the_proxy_logs_in_again_as_its_user(cluster):
    px = open_proxy(NameDial(NAMES), upstream(cluster, username=USER, password=lambda: SECRET))
    try:
        conn = redis.Connection(port=px.add(NAMES[0], cluster.nodes[0].port), socket_timeout=10)
        conn.send_command("RESET")
        assert conn.read_response() == b"RESET"
        conn.send_command("ACL", "WHOAMI")  # `default` is off: -NOAUTH unless logged in
        assert conn.read_response() == USER.encode()
        conn.disconnect()
        assert px.errors == []
    finally:
        px.close()


def test_an_ip_only_node_is_verified_against_the_endpoint_name_by_default(cluster):
    """ROLE, INFO replication and MOVED on a cluster-mode disabled cache name nodes by IP.
    With no REDIS_TLS_SERVER_NAME, the tunnel checks them against REDIS_HOST (the endpoint
    whose certificate covers the cache's nodes), not against the IP."""
    from closeup_ops.connect.tunnel.session import upstream_for
    from closeup_ops.settings import load

    port = cluster.nodes[0].port
    settings = load(
        {"host": NAMES[0], "port": port, "tls": True, "ca_cert": cluster.ca, "username": USER},
        environ={},
        password=SECRET,
    )
    assert settings.tls_server_name is None
    px = open_proxy(NameDial(), upstream_for(settings))
    try:
        r = redis.Redis(port=px.add("127.0.0.1", port), socket_timeout=10)
        assert r.ping()
        r.close()
    finally:
        px.close()
