"""The local RESP proxy against a real 3-primary cluster with replicas (nodes announce
hostnames, as ElastiCache does) and real standalone servers.

The dialer stands in for the bastion: it resolves the nodes' announced names to 127.0.0.1.
Every expected address comes from the servers themselves (direct connections)."""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest
import redis
from helpers.resp_proxy import NameDial, cluster_proxy, open_proxy, wait_until

from closeup_ops.local.cluster import start_cluster

NAMES = [f"node{i}.plain.closeup.test" for i in range(6)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory.mktemp("proxy-cluster"), 3, 1, hostnames=NAMES)
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster):
    yield from cluster_proxy(NAMES, cluster)


def direct(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=10)


def owner(cluster, key: str) -> int:
    """The real port of the primary serving `key`, asked of the servers directly."""
    r = direct(cluster.nodes[0].port)
    slot = r.execute_command("CLUSTER", "KEYSLOT", key)
    for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(primary[1])
    raise AssertionError(f"no owner for slot {slot}")


def real_ports(cluster) -> set[int]:
    return {n.port for n in cluster.nodes}


def name_of(cluster, port: int) -> str:
    return NAMES[[n.port for n in cluster.nodes].index(port)]


def key_on(cluster, port: int, prefix: str) -> str:
    keys = (f"{prefix}{{{i}}}" for i in range(10000))
    return next(key for key in keys if owner(cluster, key) == port)


def test_redis_py_cluster_client_writes_to_every_node_through_local_ports(cluster, proxy):
    rc = redis.RedisCluster(host="127.0.0.1", port=proxy.entry, socket_timeout=10)
    keys = {f"rp:{i}": f"value-{i}" for i in range(300)}
    for key, value in keys.items():
        rc.set(key, value)
    assert all(rc.get(key) == value.encode() for key, value in keys.items())
    local = set(proxy.nodes().values())
    assert {node.port for node in rc.get_nodes()} <= local  # only local endpoints handed out
    assert not local & real_ports(cluster)
    owners = {}
    for key, value in keys.items():  # on the servers themselves
        owners[key] = owner(cluster, key)
        assert direct(owners[key]).get(key) == value.encode()
    assert len(set(owners.values())) == 3
    assert proxy.dial_log.calls and all(host in NAMES for host, _ in proxy.dial_log.calls)
    rc.close()


def test_redis_cli_c_follows_redirects_to_local_endpoints(cluster, proxy):
    keys = [f"cli:{i}" for i in range(60)]
    script = "".join(f"SET {k} {k}-v\n" for k in keys)
    out = subprocess.run(
        ["redis-cli", "-c", "-p", str(proxy.entry)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("OK") == 60
    targets = {int(p) for p in re.findall(r"located at 127\.0\.0\.1:(\d+)", out.stdout)}
    assert targets and targets <= set(proxy.nodes().values())
    for key in keys:
        assert direct(owner(cluster, key)).get(key) == f"{key}-v".encode()


def test_redis_benchmark_cluster_runs_clean(proxy):
    out = subprocess.run(
        ["redis-benchmark", "--cluster", "-p", str(proxy.entry), "-n", "3000", "-c", "8"]
        + ["-t", "set,get", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "SET:" in text and "GET:" in text and "error" not in text.lower()


def test_pipeline_with_a_transaction_holding_cluster_slots(cluster, proxy):
    key = key_on(cluster, cluster.nodes[0].port, "tx")
    conn = redis.Connection(port=proxy.entry, socket_timeout=10)
    commands = [("SET", key, "v")] + [("INCR", f"{key}:n")] * 50
    commands += [("MULTI",), ("GET", key), ("CLUSTER", "SLOTS"), ("EXEC",)]
    commands += [("CLUSTER", "NODES"), ("GET", "elsewhere-{x}"), ("PING",)]
    conn.send_packed_command(conn.pack_commands(commands))
    replies = []
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    local = set(proxy.nodes().values())
    assert replies[50] == 50 and replies[52:54] == [b"QUEUED", b"QUEUED"]
    value, slots = replies[54]
    assert value == b"v"
    nodes = [node for slot_range in slots for node in slot_range[2:]]
    assert len(nodes) >= 3 and all(node[0] == b"127.0.0.1" and node[1] in local for node in nodes)
    text = replies[55].decode()
    addresses = re.findall(r" ([\d.]*):(\d+)@", text)
    assert len(addresses) == 6 and all(ip == "127.0.0.1" and int(p) in local for ip, p in addresses)
    assert all(name not in text for name in NAMES)
    if isinstance(replies[56], redis.ResponseError):  # another node's key: a local MOVED
        assert int(str(replies[56]).rsplit(":", 1)[1]) in local
    assert replies[57] in (b"PONG", True)
    conn.disconnect()


def test_blocking_pop_served_later_keeps_pairing(cluster, proxy):
    rc = redis.RedisCluster(host="127.0.0.1", port=proxy.entry, socket_timeout=10)
    key = "blocking:list"
    node = rc.get_node_from_key(key)
    conn = redis.Connection(port=node.port, socket_timeout=10)
    conn.send_command("BLPOP", key, 0)
    server = direct(owner(cluster, key))
    wait_until(lambda: any(c["cmd"] == "blpop" for c in server.client_list()), "BLPOP to block")
    rc.lpush(key, "later")
    assert conn.read_response() == [key.encode(), b"later"]
    conn.send_command("CLUSTER", "SLOTS")
    slots = conn.read_response()
    assert all(n[0] == b"127.0.0.1" for r in slots for n in r[2:])
    conn.disconnect()
    rc.close()


def test_pubsub_and_sharded_pubsub(proxy):
    r = redis.Redis(port=proxy.entry, socket_timeout=10)
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("news")
    rc = redis.RedisCluster(host="127.0.0.1", port=proxy.entry, socket_timeout=10)
    wait_until(lambda: rc.publish("news", "hello") and False or _got(ps, b"hello"), "message")
    sps = rc.pubsub()
    sps.ssubscribe("shard-news")
    got = []

    def sharded():
        rc.spublish("shard-news", "s-hello")
        msg = sps.get_sharded_message(timeout=0.2)
        got.append(msg)
        return msg and msg["type"] == "smessage" and msg["data"] == b"s-hello"

    wait_until(sharded, "sharded message")
    ps.close()
    sps.close()
    rc.close()


def _got(ps, data: bytes) -> bool:
    msg = ps.get_message(timeout=0.2)
    return bool(msg and msg["data"] == data)


def test_resp3_pushes_do_not_break_pairing(cluster, proxy):
    import socket

    with socket.create_connection(("127.0.0.1", proxy.entry), timeout=10) as s:
        s.sendall(b"HELLO 3\r\nSUBSCRIBE r3\r\n")
        buf = b""
        while b">3\r\n$9\r\nsubscribe\r\n" not in buf:
            buf += s.recv(65536)
        direct(cluster.nodes[0].port).publish("r3", "pushed")
        s.sendall(b"CLUSTER SLOTS\r\nPING\r\n")
        while not buf.endswith(b"+PONG\r\n"):
            buf += s.recv(65536)
    assert b">3\r\n$7\r\nmessage\r\n$2\r\nr3\r\n$6\r\npushed\r\n" in buf
    tail = buf.split(b"$6\r\npushed\r\n", 1)[1]
    assert b"127.0.0.1" in tail
    assert not any(b":%d\r\n" % p in tail for p in real_ports(cluster))


def _until(sock, marker: bytes, buf: bytes = b"") -> bytes:
    while marker not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {buf[-200:]!r}"
        buf += chunk
    return buf


def _slots_are_local(reply: bytes, cluster) -> bool:
    return b"$9\r\n127.0.0.1\r\n" in reply and not any(
        b":%d\r\n" % p in reply for p in real_ports(cluster)
    )


def test_client_reply_skip_off_on_and_monitor_until_reset(cluster, proxy):
    import socket

    with socket.create_connection(("127.0.0.1", proxy.entry), timeout=10) as s:
        s.sendall(
            b"CLIENT REPLY SKIP\r\nSET quiet:1 a\r\nCLIENT REPLY OFF\r\nSET quiet:2 b\r\n"
            b"CLIENT REPLY ON\r\nCLUSTER SLOTS\r\nPING\r\n"
        )
        buf = _until(s, b"+PONG\r\n")
    assert buf.startswith(b"+OK\r\n*") and _slots_are_local(buf, cluster)
    with socket.create_connection(("127.0.0.1", proxy.entry), timeout=10) as mon:
        mon.sendall(b"MONITOR\r\n")
        buf = _until(mon, b"+OK\r\n")
        other = redis.Connection(port=proxy.entry, socket_timeout=10)
        other.send_command("CLUSTER", "SLOTS")
        other.read_response()
        buf = _until(mon, b'"CLUSTER" "SLOTS"', buf)  # the stream passes as it is
        mon.sendall(b"RESET\r\nCLUSTER SLOTS\r\nPING\r\n")
        buf = _until(mon, b"+PONG\r\n", buf)
        other.disconnect()
    after = buf.split(b"+RESET\r\n", 1)[1]
    assert after.startswith(b"*") and _slots_are_local(after, cluster)


@pytest.mark.parametrize("protocol", [3, 2])
def test_cluster_shards_maps_and_flat_arrays(cluster, proxy, protocol):
    conn = redis.Connection(port=proxy.entry, protocol=protocol, socket_timeout=10)
    conn.send_command("CLUSTER", "SHARDS")
    shards = conn.read_response()
    local = set(proxy.nodes().values())
    seen = 0
    for shard in shards:
        shard = shard if isinstance(shard, dict) else _flat(shard)
        for node in shard[b"nodes"]:
            node = node if isinstance(node, dict) else _flat(node)
            assert node[b"port"] in local
            assert all(node[k] == b"127.0.0.1" for k in (b"ip", b"endpoint", b"hostname"))
            seen += 1
    assert seen == 6
    assert isinstance(shards[0], dict) == (protocol == 3)
    conn.send_command("CLUSTER", "NODES")
    text = conn.read_response()
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert len(re.findall(r" 127\.0\.0\.1:\d+@", text)) == 6
    primary = next(line.split()[0] for line in text.splitlines() if "master" in line)
    for command in ("REPLICAS", "SLAVES"):
        conn.send_command("CLUSTER", command, primary)
        (line,) = conn.read_response()
        line = line.decode() if isinstance(line, bytes) else str(line)
        port = int(re.match(r"\w+ 127\.0\.0\.1:(\d+)@", line).group(1))
        assert port in set(proxy.nodes().values())
    conn.disconnect()


def _flat(items: list) -> dict:
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}


def test_readonly_reads_on_a_replica(cluster, proxy):
    conn = redis.Connection(port=proxy.entry, protocol=2, socket_timeout=10)
    conn.send_command("CLUSTER", "SHARDS")
    shard = next(_flat(s) for s in conn.read_response() if len(_flat(s)[b"nodes"]) == 2)
    nodes = [_flat(n) for n in shard[b"nodes"]]
    primary = next(n[b"port"] for n in nodes if n[b"role"] == b"master")
    replica = next(n[b"port"] for n in nodes if n[b"role"] == b"replica")
    key = next(f"ro:{i}" for i in range(5000) if _slot_in(conn, f"ro:{i}", shard[b"slots"]))
    write = redis.Connection(port=primary, socket_timeout=10)
    write.send_command("SET", key, "on-the-primary")
    assert write.read_response() == b"OK"
    write.send_command("WAIT", 1, 5000)
    assert write.read_response() == 1
    read = redis.Connection(port=replica, socket_timeout=10)
    read.send_command("GET", key)
    with pytest.raises(redis.ResponseError, match=rf"^\d+ 127\.0\.0\.1:{primary}$"):
        read.read_response()
    read.send_command("READONLY")
    assert read.read_response() == b"OK"
    read.send_command("GET", key)
    assert read.read_response() == b"on-the-primary"
    for c in (conn, write, read):
        c.disconnect()


def _slot_in(conn, key: str, ranges: list) -> bool:
    conn.send_command("CLUSTER", "KEYSLOT", key)
    slot = conn.read_response()
    return any(ranges[i] <= slot <= ranges[i + 1] for i in range(0, len(ranges), 2))


def test_a_20_mb_value_round_trip(cluster, proxy):
    import os

    value = os.urandom(20 * 1024 * 1024)
    rc = redis.RedisCluster(host="127.0.0.1", port=proxy.entry, socket_timeout=30)
    rc.set("big:value", value)
    assert hashlib.sha256(rc.get("big:value")).digest() == hashlib.sha256(value).digest()
    stored = direct(owner(cluster, "big:value")).get("big:value")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(value).digest()
    rc.delete("big:value")
    rc.close()


def test_ask_during_a_slot_migration_names_a_new_local_listener(cluster):
    key = "ask:absent-key"
    source = owner(cluster, key)
    target = next(p for p in {owner(cluster, f"t{i}") for i in range(50)} if p != source)
    src, dst = direct(source), direct(target)
    slot = src.execute_command("CLUSTER", "KEYSLOT", key)
    src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
    px = open_proxy(NameDial(NAMES))
    try:
        entry = px.add(name_of(cluster, source), source)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        conn = redis.Connection(port=entry, protocol=2, socket_timeout=10)
        conn.send_command("GET", key)
        with pytest.raises(redis.exceptions.AskError) as err:
            conn.read_response()
        assert str(err.value).startswith(f"{slot} 127.0.0.1:")
        local = int(str(err.value).rsplit(":", 1)[1])
        assert px.nodes()[("127.0.0.1", target)] == local  # made before the reply went out
        there = redis.Connection(port=local, protocol=2, socket_timeout=10)
        there.send_command("ASKING")
        assert there.read_response() == b"OK"
        there.send_command("GET", key)
        assert there.read_response() is None
        for c in (conn, there):
            c.disconnect()
        assert px.errors == []
    finally:
        for r in (src, dst):
            r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", src_id)
        px.close()


def test_failover_moved_to_the_new_primary_gets_a_listener_on_the_fly(cluster, proxy):
    """Last in the module: it changes which node is primary."""
    key = "failover:key"
    old = owner(cluster, key)
    rc = redis.RedisCluster(host="127.0.0.1", port=proxy.entry, socket_timeout=10)
    rc.set(key, "before")
    info = [direct(n.port).info("replication") for n in cluster.nodes]
    replica = next(
        n.port for n, i in zip(cluster.nodes, info, strict=True) if i.get("master_port") == old
    )
    direct(old).wait(1, 5000)
    fresh_dial = NameDial(NAMES)
    fresh = open_proxy(fresh_dial)
    try:
        entry = fresh.add(name_of(cluster, old), old)
        assert fresh.nodes() == {(name_of(cluster, old), old): entry}
        direct(replica).execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: owner(cluster, key) == replica, "the replica to take over")
        out = subprocess.run(
            ["redis-cli", "-c", "-p", str(entry)],
            input=f"GET {key}\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip().endswith("before"), out
        new = [k for k in fresh.nodes() if k[1] == replica]
        assert new, fresh.nodes()
        assert f"located at 127.0.0.1:{fresh.nodes()[new[0]]}" in out.stdout
        rc.set(key, "after")  # the long-lived client follows too
        assert direct(replica).get(key) == b"after"
        assert fresh.errors == []
    finally:
        fresh.close()
        rc.close()
