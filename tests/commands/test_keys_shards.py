"""keys/ttl on real clusters, shards at once: --replicas checked on the servers (INFO
commandstats), the fallback line, --rate checked on the servers, a slot migrated during a
scan is said, a shard killed mid-scan, Ctrl-C with exact counts, bad values."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from helpers.common import server_env
from helpers.keyspace import client_for, fill, unique_prefix

from closeup_ops.local.cluster import start_cluster
from closeup_ops.ops.keyspace import scan as keyspace_scan

READS = ("cmdstat_scan", "cmdstat_pttl", "cmdstat_memory|usage", "cmdstat_type")


def ndjson(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_until(check, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def node_client(node):
    import redis

    return redis.Redis(host=node.host, port=node.port)


def roles(cluster) -> tuple[list, list]:
    primaries, replicas = [], []
    for node in cluster.nodes:
        if not node.alive():
            continue
        c = node_client(node)
        (primaries if c.info("replication")["role"] == "master" else replicas).append(node)
        c.close()
    return primaries, replicas


def commandstats(node) -> dict[str, int]:
    c = node_client(node)
    try:
        return {k: v["calls"] for k, v in c.info("commandstats").items()}
    finally:
        c.close()


def reset_stats(nodes) -> None:
    for node in nodes:
        c = node_client(node)
        c.config_resetstat()
        c.close()


def replicas_caught_up(primaries, replicas) -> bool:
    sizes = set()
    for node in primaries + replicas:
        c = node_client(node)
        sizes.add((c.info("replication").get("master_repl_offset"), c.dbsize()))
        c.close()
    total_p = sum(node_client(n).dbsize() for n in primaries)
    total_r = sum(node_client(n).dbsize() for n in replicas)
    return total_p == total_r


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory):
    """3 primaries, no replica: for the fallback line and the slot migration."""
    cluster = start_cluster(tmp_path_factory.mktemp("bare"), 3, 0)
    yield cluster
    cluster.stop()


# --- --replicas ---------------------------------------------------------------------------


def test_replicas_read_from_replicas_not_primaries(cli, redis_cluster):
    """commandstats: SCAN, PTTL, MEMORY USAGE and TYPE of these runs land on the replicas
    only; each JSON row and document names the replica it was read from."""
    client = client_for(redis_cluster)
    prefix = unique_prefix("rep")
    fill(client, prefix + ":r:{}", 3000, ttl=600)
    primaries, replicas = roles(redis_cluster)
    assert len(primaries) == len(replicas) == 3
    wait_until(lambda: replicas_caught_up(primaries, replicas), "replicas to catch up")
    reset_stats(primaries + replicas)
    env = server_env(redis_cluster.entry)
    try:
        r = cli("keys", f"{prefix}:*", "--ttl", "--memory", "--replicas", "--json", env=env)
        assert r.code == 0, r.err
        rows = ndjson(r.out)
        assert len(rows) == 3000 and all(row["ttl_ms"] > 0 for row in rows)
        replica_addresses = {n.address for n in replicas}
        assert {row["read_from"] for row in rows} == replica_addresses, r.err
        summary = cli("keys", f"{prefix}:*", "--summary", "--replicas", "--json", env=env)
        assert summary.code == 0, summary.err
        doc = summary.json()
        assert doc["keys"] == 3000
        assert {s["read_from"] for s in doc["shards"]} == replica_addresses
        assert {s["primary"] for s in doc["shards"]} == {n.address for n in primaries}
        assert all(s["role"] == "replica" and s["note"] is None for s in doc["shards"])
        ttl = cli("ttl", "--pattern", f"{prefix}:*", "--replicas", "--json", env=env)
        assert ttl.code == 0 and ttl.json()["with_ttl"] == 3000, ttl.err
        for node in primaries:
            stats = commandstats(node)
            assert not [c for c in READS if c in stats], (node.address, stats)
        on_replicas = [commandstats(n) for n in replicas]
        assert all(s.get("cmdstat_scan", 0) > 0 for s in on_replicas)
        assert sum(s.get("cmdstat_pttl", 0) for s in on_replicas) == 3 * 3000
        assert sum(s.get("cmdstat_memory|usage", 0) for s in on_replicas) == 2 * 3000
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def test_replicas_delete_still_unlinks_on_primaries(cli, redis_cluster):
    client = client_for(redis_cluster)
    prefix = unique_prefix("repd")
    fill(client, prefix + ":d:{}", 500)
    primaries, replicas = roles(redis_cluster)
    wait_until(lambda: replicas_caught_up(primaries, replicas), "replicas to catch up")
    reset_stats(primaries + replicas)
    try:
        r = cli(
            "keys",
            f"{prefix}:*",
            "--delete",
            "--yes",
            "--replicas",
            "--json",
            env=server_env(redis_cluster.entry),
        )
        assert r.code == 0, r.err
        assert r.json()["deleted"] == 500
        assert "deletes on the primaries" in r.err
        assert sum(commandstats(n).get("cmdstat_unlink", 0) for n in primaries) > 0
        assert not [n for n in replicas if commandstats(n).get("cmdstat_scan")]
    finally:
        client.close()


def test_replicas_fall_back_to_the_primary_with_a_line(cli, bare_cluster):
    client = client_for(bare_cluster)
    prefix = unique_prefix("fb")
    fill(client, prefix + ":x:{}", 300)
    try:
        r = cli(
            "keys",
            f"{prefix}:*",
            "--summary",
            "--replicas",
            "--json",
            env=server_env(bare_cluster.entry),
        )
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["keys"] == 300
        assert all(s["role"] == "primary" and s["read_from"] == s["primary"] for s in doc["shards"])
        lines = [x for x in r.err_lines if "no replica" in x]
        assert len(lines) == 3, r.err  # one line per shard
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def test_replicas_standalone_reads_the_listed_replica(cli, redis_replicated):
    primary, replica = redis_replicated.primary, redis_replicated.replica
    client = client_for(primary)
    prefix = unique_prefix("srep")
    fill(client, prefix + ":s:{}", 400, ttl=600)
    wait_until(lambda: node_client(replica).dbsize() == client.dbsize(), "replica to catch up")
    reset_stats([primary, replica])
    try:
        r = cli("ttl", "--pattern", f"{prefix}:*", "--replicas", "--json", env=server_env(primary))
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["with_ttl"] == 400
        (shard,) = doc["shards"]
        assert shard["role"] == "replica" and shard["read_from"] == replica.address
        assert "cmdstat_pttl" not in commandstats(primary)
        assert commandstats(replica)["cmdstat_pttl"] == 400
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


# --- --rate -------------------------------------------------------------------------------------


def test_rate_caps_the_commands_each_node_sees(cli, redis_cluster, tmp_path):
    """Counted on the servers: every command of the run, per node, and the run lasted at
    least what the busiest node's count costs at the rate, less one bucket (0.1 s)."""
    client = client_for(redis_cluster)
    prefix = unique_prefix("rate")
    fill(client, prefix + ":q:{}", 2400, ttl=600)
    primaries, _ = roles(redis_cluster)
    reset_stats(primaries)
    rate = 1000
    (tmp_path / "rate.env").write_text(f"REDIS_RATE={rate}\n")  # also settable in .env
    try:
        start = time.monotonic()
        r = cli(
            "keys",
            f"{prefix}:*",
            "--ttl",
            "--json",
            "--scan-count",
            "200",
            "--env-file",
            str(tmp_path / "rate.env"),
            env=server_env(redis_cluster.entry),
        )
        elapsed = time.monotonic() - start
        assert r.code == 0, r.err
        assert len(ndjson(r.out)) == 2400
        per_node = []
        for node in primaries:
            stats = commandstats(node)
            per_node.append(stats.get("cmdstat_scan", 0) + stats.get("cmdstat_pttl", 0))
        pttl = sum(commandstats(n).get("cmdstat_pttl", 0) for n in primaries)
        assert pttl == 2400  # the count is right: one PTTL per key, nothing resent
        assert elapsed >= (max(per_node) - rate / 10) / rate, (per_node, elapsed)
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


# --- the slot map -------------------------------------------------------------------------------


def migrate_slot(cluster, slot: int) -> None:
    """Move `slot` (and its keys) from its owner to another primary, as redis-cli would."""
    nodes = [n for n in cluster.nodes if n.alive()]
    clients = {n.address: node_client(n) for n in nodes}
    try:
        ids = {a: c.execute_command("CLUSTER", "MYID").decode() for a, c in clients.items()}
        owner = next(
            a for a, c in clients.items() if c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
        )
        dest = next(a for a in clients if a != owner)
        src, dst = clients[owner], clients[dest]
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dest])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            host, port = dest.rsplit(":", 1)
            src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
        for c in clients.values():
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[dest])
    finally:
        for c in clients.values():
            c.close()


def test_slot_migration_during_the_scan_is_said(cli, bare_cluster, monkeypatch):
    client = client_for(bare_cluster)
    prefix = unique_prefix("mig")
    fill(client, prefix + ":m:{}", 3000)
    slot = client.keyslot(f"{prefix}:m:7")
    env = server_env(bare_cluster.entry)
    try:
        # A stable cluster first: nothing said, and the JSON says the map held.
        r = cli("keys", f"{prefix}:*", "--summary", "--json", env=env)
        assert r.code == 0 and r.json()["slot_map_changed"] is False, r.err
        assert "slot map" not in r.err

        # Then: once the scan has read 5 replies, hold it until the slot has moved.
        started, moved = threading.Event(), threading.Event()
        real = keyspace_scan.NodeChannel.read
        count = [0]
        lock = threading.Lock()

        def read(self, n):
            with lock:
                count[0] += 1
                mine = count[0] == 5
            if mine:
                started.set()
                assert moved.wait(30), "the migration did not finish"
            return real(self, n)

        def migrate():
            if started.wait(30):
                migrate_slot(bare_cluster, slot)
            moved.set()

        mover = threading.Thread(target=migrate)
        mover.start()
        monkeypatch.setattr(keyspace_scan.NodeChannel, "read", read)
        try:
            r = cli(
                "keys",
                f"{prefix}:*",
                "--summary",
                "--json",
                "--rate",
                "2000",
                "--scan-count",
                "50",
                env=env,
            )
        finally:
            moved.set()
            mover.join()
        assert r.code == 0, r.err
        assert r.json()["slot_map_changed"] is True
        assert "slot map changed during the scan" in r.err and "SCAN cannot promise" in r.err
    finally:
        monkeypatch.undo()
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "{p}:*", "--json", "--scan-count", "100"],
        ["keys", "{p}:*", "--summary", "--scan-count", "100"],
        ["keys", "{p}:*", "--delete", "--yes", "--scan-count", "100"],
    ],
)
def test_shard_killed_mid_scan_exit_3_with_count(cli, tmp_path, monkeypatch, args):
    cluster = start_cluster(tmp_path / "kill", 3, 0)
    try:
        client = client_for(cluster)
        prefix = unique_prefix("kill")
        fill(client, prefix + ":k:{}", 15_000)
        client.close()
        by_address = {n.address: n for n in cluster.nodes}
        # Every receive (threaded or multiplexed path) goes through NodeChannel._fill.
        real = keyspace_scan.NodeChannel._fill
        count = [0]
        lock = threading.Lock()

        def fill_then_kill(self):
            with lock:
                count[0] += 1
                now = count[0] == 30
            if now:  # kill the node this very channel reads from
                by_address[self.address].kill()
            return real(self)

        monkeypatch.setattr(keyspace_scan.NodeChannel, "_fill", fill_then_kill)
        r = cli(*[a.format(p=prefix) for a in args], env=server_env(cluster.entry))
        assert r.code == 3, r.err
        assert len(r.err_lines) == 1 and "Traceback" not in r.err, r.err
        m = re.search(r"scanned (\d+) keys before the connection was lost \(127\.0\.0\.1:", r.err)
        assert m, r.err
        assert 0 < int(m.group(1)) < 15_000
        if "--json" in args:
            assert 0 < len(ndjson(r.out)) <= int(m.group(1))
        if "--delete" in args:
            assert "; deleted at least " in r.err
    finally:
        cluster.stop()


def test_ctrl_c_with_shards_at_once_exit_130_exact_count(cli, redis_cluster, monkeypatch):
    client = client_for(redis_cluster)
    prefix = unique_prefix("int")
    fill(client, prefix + ":i:{}", 6000)
    from closeup_ops.ops.keyspace import encode as keyspace_encode

    real = keyspace_encode.ndjson_batch
    calls = [0]

    def interrupting(*a, **kw):
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(keyspace_encode, "ndjson_batch", interrupting)
    try:
        r = cli(
            "keys",
            f"{prefix}:*",
            "--json",
            "--scan-count",
            "100",
            env=server_env(redis_cluster.entry),
        )
        assert r.code == 130
        assert len(r.err_lines) == 1, r.err
        m = re.search(r"interrupted: scanned (\d+) keys on \d of 3 primaries, listed (\d+)", r.err)
        assert m, r.err
        # What was said is what was written: every listed key is on stdout, no more.
        assert int(m.group(2)) == len(ndjson(r.out)) > 0
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


@pytest.mark.parametrize(
    "args, env, needle",
    [
        (["keys", "--parallel", "0"], {}, "--parallel 0 is not valid"),
        (["keys", "--parallel", "65"], {}, "--parallel 65 is not valid"),
        (["keys", "--rate", "0"], {}, "--rate"),
        (["keys", "--rate", "x"], {}, "--rate"),
        (["ttl", "--pattern", "*", "--rate", "-5"], {}, "--rate"),
        (["keys"], {"REDIS_RATE": "fast"}, "REDIS_RATE"),
        (["ttl", "k1", "--replicas"], {}, "--replicas applies to --pattern only"),
    ],
)
def test_bad_shard_options_exit_2(cli, args, env, needle):
    r = cli(*args, env={"REDIS_PORT": "1", **env})
    assert r.code == 2, r.err
    assert needle in r.err and len(r.err_lines) == 1 and "Traceback" not in r.err


def test_replicas_when_info_is_refused_fall_back_with_a_line(cli, tmp_path):
    """An ACL user without INFO cannot list the replicas: the primary is read, and said."""
    from closeup_ops.local.servers import start_redis

    server = start_redis(tmp_path / "acl")
    try:
        admin = node_client(server)
        admin.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw-123", "~*", "+@all", "-info")
        fill(admin, "q:{}", 50, ttl=60)
        env = server_env(
            server, REDIS_USERNAME="noinfo", REDIS_PASSWORD="pw-123", REDIS_CLUSTER="false"
        )
        r = cli("ttl", "--pattern", "q:*", "--replicas", "--json", env=env)
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["with_ttl"] == 50 and doc["shards"][0]["role"] == "primary"
        assert "no replica" in r.err and "pw-123" not in r.out + r.err
        admin.close()
    finally:
        server.stop()


@pytest.mark.parametrize("yes", [False, True])
def test_delete_limit_is_exact_across_shards(cli, redis_cluster, yes):
    """--limit 37 over three shards at once: 37 matched (and UNLINKed), not one more."""
    client = client_for(redis_cluster)
    prefix = unique_prefix("dl")
    fill(client, prefix + ":l:{}", 3000)
    try:
        args = ["keys", f"{prefix}:*", "--delete", "--limit", "37", "--scan-count", "100"]
        r = cli(*args, *(["--yes"] if yes else []), "--json", env=server_env(redis_cluster.entry))
        assert r.code == 0, r.err
        doc = r.json()
        assert doc["matched"] == 37 and doc["deleted"] == (37 if yes else 0), doc
        left = sum(1 for _ in client.scan_iter(f"{prefix}:*", count=1000))
        assert left == 3000 - doc["deleted"]
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


def test_replicas_values_read_on_replicas(cli, redis_cluster):
    client = client_for(redis_cluster)
    prefix = unique_prefix("rv")
    fill(client, prefix + ":v:{}", 200, value="secret-123")
    primaries, replicas = roles(redis_cluster)
    wait_until(lambda: replicas_caught_up(primaries, replicas), "replicas to catch up")
    reset_stats(primaries + replicas)
    try:
        r = cli(
            "keys",
            f"{prefix}:*",
            "--values",
            "--replicas",
            "--json",
            env=server_env(redis_cluster.entry),
        )
        assert r.code == 0, r.err
        rows = ndjson(r.out)
        assert len(rows) == 200 and "secret-123" not in r.out
        assert all(row["type"] == "string" for row in rows), rows[0]
        assert all(row["length"] == len("secret-123") for row in rows)
        assert {row["read_from"] for row in rows} <= {n.address for n in replicas}
        for node in primaries:
            stats = commandstats(node)
            assert not {"cmdstat_type", "cmdstat_strlen"} & set(stats), stats
        assert sum(commandstats(n).get("cmdstat_strlen", 0) for n in replicas) == 200
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()
