"""Each finding produced for real on a redis-server of the test's own (and shown absent on
healthy caches): evictions, a full noeviction cache, slow commands, connections near
maxclients, many connections from one process, a client that does not read, a replica whose
link is down, a lagging replica, a hot key under LFU, a big key, one fat shard, a low hit
rate. Each runs `closeup-ops triage` as a user would."""

from __future__ import annotations

import os
import signal
import socket
import threading
from contextlib import contextmanager

import pytest
import redis
from helpers.triage import findings, triage, wait_until

from closeup_ops.local.cluster import start_cluster
from closeup_ops.local.servers import start_redis, start_replicated

SECRET = "value-that-must-never-be-printed-7731"


@pytest.fixture
def server(tmp_path):
    started = []

    def make(*args: str):
        s = start_redis(tmp_path / f"s{len(started)}", *args)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def client(s) -> redis.Redis:
    return redis.Redis(host=s.host, port=s.port)


@contextmanager
def background(work):
    """Run work(stop_event) in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def calls(commandstats: dict) -> dict[str, int]:
    """Calls by command ("info", "client|list") from INFO commandstats."""
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in commandstats.items()}


# --- healthy caches: no findings ----------------------------------------------------------


def fresh_slowlog(*servers) -> None:
    """Forget the slow commands that the test's own seeding or earlier tests (on the shared,
    session-wide servers) left: on a loaded machine a SET or a DEL can take over 10 ms, and
    that is a true finding about the window, not about the cache under test. Called just
    before triage, on every node it reads."""
    for s in servers:
        client(s).slowlog_reset()


def test_healthy_standalone_has_no_findings(cli, server):
    s = server("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    c = client(s)
    for i in range(200):
        c.set(f"user:{i}", "x" * 100, ex=600)
    fresh_slowlog(s)
    r, doc = triage(cli, s)
    assert r.code == 0, r.err
    assert doc["findings"] == []
    assert {p["name"]: p["ok"] for p in doc["parts"]} == {
        "nodes": True,
        "slowlog": True,
        "clients": True,
        "keys": True,
        "aws": False,
    }
    node = doc["nodes"][0]
    assert node["role"] == "master" and node["keys"] == 200 and node["expires"] == 200
    assert node["maxmemory"] == 64 << 20 and node["maxmemory_policy"] == "allkeys-lru"
    assert doc["keys"]["namespaces"][0]["namespace"] == "user:"
    assert doc["keys"]["namespaces"][0]["ttl_share"] == 1.0


def test_healthy_cluster_and_replicated_have_no_findings(cli, redis_cluster, redis_replicated):
    fresh_slowlog(*redis_cluster.nodes)
    r, doc = triage(cli, redis_cluster.entry)
    assert r.code == 0, r.err
    assert doc["findings"] == [] and doc["cluster"] is True
    roles = sorted(n["role"] for n in doc["nodes"])
    assert roles == ["master"] * 3 + ["slave"] * 3
    assert len(doc["shards"]["shards"]) == 3 and doc["shards"]["memory_ratio"] < 2
    human = cli("triage", "--no-aws", "--interval", "0.5",
                env={"REDIS_HOST": redis_cluster.entry.host,
                     "REDIS_PORT": str(redis_cluster.entry.port)})  # fmt: skip
    assert "## Shards" in human.out and "Largest shard against the median: memory" in human.out
    for s in (redis_replicated.primary, redis_replicated.replica):
        fresh_slowlog(s)
        r, doc = triage(cli, s)
        assert r.code == 0, r.err
        assert doc["findings"] == []
    assert doc["nodes"][0]["master_link_status"] == "up"


# --- memory ---------------------------------------------------------------------------------


def test_evictions_rising_are_critical_with_the_namespace_that_holds_memory(cli, server):
    s = server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")
    c = client(s)

    def write(stop):
        i = 0
        while not stop.is_set():
            pipe = c.pipeline(transaction=False)
            for _ in range(200):
                pipe.set(f"video:{i}", b"v" * 1000)
                i += 1
            pipe.execute()

    with background(write):
        wait_until(lambda: c.info("stats")["evicted_keys"] > 0, "evictions")
        r, doc = triage(cli, s)
    assert r.code == 6, r.err
    f = findings(doc)["evictions"]
    assert f["severity"] == "critical" and doc["findings"][0]["id"] == "evictions"
    assert any("namespace video: holds 100% of sampled memory, 0% of it with a TTL" in e
               for e in f["evidence"])  # fmt: skip
    assert doc["nodes"][0]["evictions_per_s"] > 0
    assert r.err_lines == [
        "closeup-ops: error: triage: 1 critical finding(s) (evictions): see the findings "
        "and what to do above"
    ]


def test_noeviction_at_the_limit_is_critical(cli, server):
    s = server("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    c = client(s)
    full = threading.Event()

    def write(stop):
        i = 0
        while not stop.is_set():
            try:
                c.set(f"cart:{i}", b"c" * 1000)
            except redis.exceptions.ResponseError:  # OOM: writes now fail
                full.set()
            i += 1

    with background(write):
        wait_until(full.is_set, "OOM errors")
        r, doc = triage(cli, s)
    assert r.code == 6, r.err
    f = findings(doc)["memory-full"]
    assert f["severity"] == "critical" and "writes fail with OOM" in f["title"]
    assert doc["nodes"][0]["oom_errors_per_s"] > 0


# --- slow log -------------------------------------------------------------------------------


def test_slow_commands_by_namespace_never_values(cli, server):
    s = server("--enable-debug-command", "yes", "--slowlog-log-slower-than", "10000")
    c = client(s)
    c.execute_command("DEBUG", "SLEEP", "0.05")
    busy = "local t = redis.call('TIME') repeat local n = redis.call('TIME') until " \
           "(n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 30000 return 1"  # fmt: skip
    c.eval(busy, 1, "secret:token:42", SECRET)
    r, doc = triage(cli, s)
    assert r.code == 0, r.err
    f = findings(doc)["slow-commands"]
    by_command = {c["command"]: c for c in doc["slowlog"]["commands"]}
    # (on a loaded machine a TIME inside the script can cross the threshold too)
    assert {"DEBUG", "EVAL"} <= set(by_command) <= {"DEBUG", "EVAL", "TIME"}
    assert by_command["EVAL"]["namespaces"] == [["secret:", 1]]
    assert by_command["DEBUG"]["max_ms"] >= 50 and by_command["EVAL"]["max_ms"] >= 30
    assert "slow command" in f["title"]
    human = cli("triage", "--no-aws", "--interval", "0.5", env={"REDIS_PORT": str(s.port)})
    for text in (r.out, human.out):
        assert SECRET not in text and "token:42" not in text and "redis.call" not in text
    assert "| EVAL | 1 |" in human.out


# --- clients --------------------------------------------------------------------------------


def test_connections_near_maxclients_are_critical(cli, server):
    s = server("--maxclients", "70")
    held = [client(s) for _ in range(64)]
    try:
        for c in held:
            c.ping()
        r, doc = triage(cli, s)
    finally:
        for c in held:
            c.close()
    assert r.code == 6, r.err
    f = findings(doc)["maxclients"]
    assert f["severity"] == "critical" and "of 70 connections" in f["title"]
    assert "many-from-one" not in findings(doc)  # 64 < the limit of 100 for that


def test_rejected_connections_rising_are_critical(cli, server):
    """Between triage's two INFO reads the server refuses connections (maxclients reached),
    then they are freed: at the second read it is far from full, but rejected_connections
    rose - the finding comes from the rate, produced here on a real server."""
    s = server("--maxclients", "40")
    watcher = client(s)
    base = calls(watcher.info("commandstats"))
    polls = [1]  # the watcher's own INFO calls
    outcome: dict[str, object] = {}

    def triage_is_between_its_reads() -> bool:
        """Triage is past the first INFO read and needs no new connection until the second:
        two INFO calls cover the nodes part's first INFO, which holds rejected_connections
        (the call before it is connect()'s INFO cluster, or without that the first read's
        INFO commandstats, on a connection already open), and the slowlog and clients parts
        are done (LATENCY LATEST is the slowlog part's last command, CLIENT LIST the clients
        part's only one). A flood earlier would refuse one of triage's own connections, or
        end before the first read and leave no rise between the two reads."""
        # INFO's own count excludes the call that reads it: what is left is triage's
        now = calls(watcher.info("commandstats"))
        theirs = {name: now.get(name, 0) - base.get(name, 0) for name in now}
        theirs["info"] -= polls[0]
        polls[0] += 1
        return (
            theirs["info"] >= 2
            and theirs.get("latency|latest", 0) >= 1
            and theirs.get("client|list", 0) >= 1
        )

    def flood(stop: threading.Event) -> None:
        # raw sockets: a refused connection is one reply, with no client-side retries
        held: list[socket.socket] = []
        try:
            wait_until(triage_is_between_its_reads, "triage's first reads")
            refused = 0
            for _ in range(80):
                sock = socket.create_connection((s.host, s.port), timeout=5)
                sock.sendall(b"PING\r\n")
                reply = sock.recv(256)
                if reply.startswith(b"+PONG"):
                    held.append(sock)
                    continue
                sock.close()
                assert b"max number of clients" in reply, reply
                refused += 1
                if refused >= 5:
                    break
            outcome["refused"] = refused
        except Exception as exc:  # said in the assertion below, not lost in the thread
            outcome["error"] = exc
        finally:
            for c in held:
                c.close()
            outcome["freed"] = True

    with background(flood):
        r, doc = triage(cli, s, "--interval", "4")
    watcher.close()
    assert "error" not in outcome and outcome.get("refused") == 5, outcome
    assert r.code == 6, r.err
    f = findings(doc)["maxclients"]
    assert f["severity"] == "critical" and "rejecting" in f["title"], f
    (node,) = doc["nodes"]
    # far from full at the second read: the finding is the rejections' rate, not the gauge
    assert node["connected_clients"] < 36 and node["rejected_connections"] == 5, node
    assert node["rejected_per_s"] > 0


def test_many_connections_from_one_process(cli, server):
    s = server()
    held = [redis.Redis(host=s.host, port=s.port, client_name="leaky-worker") for _ in range(120)]
    try:
        for c in held:
            c.ping()
        r, doc = triage(cli, s)
    finally:
        for c in held:
            c.close()
    assert r.code == 0, r.err  # a warning, not critical
    f = findings(doc)["many-from-one"]
    assert f["severity"] == "warning" and f["title"].startswith("120 of ")
    top = doc["clients"]["groups"][0]
    assert (top["source"], top["name"], top["connections"]) == ("127.0.0.1", "leaky-worker", 120)
    assert doc["clients"]["own"] >= 1  # closeup-ops's own connections are left out


def test_a_client_that_does_not_read_its_replies(cli, server):
    s = server()
    c = client(s)
    c.set("blob:1", b"b" * (1 << 20))
    sock = socket.create_connection((s.host, s.port))
    try:
        sock.sendall(b"CLIENT SETNAME stuck-reader\r\n" + b"GET blob:1\r\n" * 40)

        def buffered():
            return any(
                x.get("name") == "stuck-reader" and int(x["omem"]) >= 1 << 20
                for x in c.client_list()
            )

        wait_until(buffered, "an output buffer over 1 MiB")
        r, doc = triage(cli, s)
    finally:
        sock.close()
    assert r.code == 0, r.err
    f = findings(doc)["output-buffer"]
    assert "stuck-reader" in f["evidence"][0] and "last command get" in f["evidence"][0]


# --- replication ----------------------------------------------------------------------------


def test_replica_whose_primary_is_paused_has_its_link_down(cli, tmp_path):
    pair = start_replicated(tmp_path / "down", "--repl-timeout", "2")
    try:
        os.kill(pair.primary.pid, signal.SIGSTOP)
        replica = client(pair.replica)
        wait_until(lambda: replica.info("replication")["master_link_status"] == "down", "link down")
        r, doc = triage(cli, pair.replica)
    finally:
        os.kill(pair.primary.pid, signal.SIGCONT)
        pair.stop()
    assert r.code == 6, r.err
    f = findings(doc)["replica-link-down"]
    assert f["severity"] == "critical" and "down" in f["title"]


def test_paused_replica_lags_behind_its_primary(cli, tmp_path):
    pair = start_replicated(tmp_path / "lag")
    try:
        os.kill(pair.replica.pid, signal.SIGSTOP)
        primary = client(pair.primary)
        wait_until(lambda: primary.info("replication")["slave0"]["lag"] >= 6, "lag >= 6 s")
        r, doc = triage(cli, pair.primary)
    finally:
        os.kill(pair.replica.pid, signal.SIGCONT)
        pair.stop()
    assert r.code == 0, r.err
    f = findings(doc)["replica-lag"]
    assert f["severity"] == "warning" and f"{pair.replica.port}" in f["title"]
    assert doc["nodes"][0]["replicas"][0]["lag_s"] >= 6


# --- keys -----------------------------------------------------------------------------------


def test_hot_key_under_lfu(cli, server):
    s = server("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu")
    c = client(s)
    for i in range(50):  # few keys, so 1000 random picks see every one of them
        c.set(f"product:{i}", "p")

    def heat():
        pipe = c.pipeline(transaction=False)
        for _ in range(20000):
            pipe.get("product:7")
        pipe.execute()
        return c.object("freq", "product:7") >= 120

    wait_until(heat, "OBJECT FREQ >= 120", timeout=60)
    r, doc = triage(cli, s)
    assert r.code == 0, r.err
    f = findings(doc)["hot-key"]
    assert "product:7" in f["title"] and doc["keys"]["hottest"][0]["key"] == "product:7"
    assert doc["keys"]["hot_note"] is None


def test_no_hot_keys_without_lfu_and_it_says_why(cli, server):
    s = server("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    c = client(s)
    c.set("product:7", "p")
    pipe = c.pipeline(transaction=False)
    for _ in range(20000):
        pipe.get("product:7")
    pipe.execute()
    r, doc = triage(cli, s)
    assert r.code == 0, r.err
    assert "hot-key" not in findings(doc) and doc["keys"]["hottest"] == []
    assert "LFU" in doc["keys"]["hot_note"] and "allkeys-lru" in doc["keys"]["hot_note"]


def test_big_key_without_its_value(cli, server):
    s = server()
    c = client(s)
    c.set("report:2026", SECRET * 60000)  # ~2.2 MB
    for i in range(20):
        c.set(f"report:small:{i}", "s")
    r, doc = triage(cli, s)
    assert r.code == 0, r.err
    f = findings(doc)["big-key"]
    assert "report:2026" in f["evidence"][0] and "MiB" in f["evidence"][0]
    assert SECRET not in r.out


def test_one_shard_much_fuller_than_the_others(cli, tmp_path):
    cluster = start_cluster(tmp_path / "fat", 3, 0)
    try:
        rc = redis.RedisCluster(host=cluster.entry.host, port=cluster.entry.port)
        pipe = rc.pipeline()
        for i in range(400):  # one hash tag: one slot, one shard
            pipe.set(f"{{tenant42}}:{i}", b"t" * 100_000)
        pipe.execute()
        fat = rc.get_node_from_key("{tenant42}:0")
        r, doc = triage(cli, cluster.entry)
        rc.close()
    finally:
        cluster.stop()
    assert r.code == 0, r.err
    f = findings(doc)["shard-imbalance"]
    assert f"{fat.host}:{fat.port}" in f["title"] or f"{fat.port}" in f["title"]
    assert "memory by shard" in f["evidence"][0]
    shards = {x["primary"]: x for x in doc["shards"]["shards"]}
    assert len(shards) == 3 and shards[f"{fat.host}:{fat.port}"]["keys"] == 400
    assert doc["shards"]["memory_ratio"] >= 2
    assert doc["shards"]["keys_ratio"] is None  # two shards hold no keys: no median to compare


# --- hit rate -------------------------------------------------------------------------------


def test_low_hit_rate_while_triage_watches(cli, server):
    s = server()
    c = client(s)
    c.set("page:1", "x")

    def read(stop):
        while not stop.is_set():
            pipe = c.pipeline(transaction=False)
            pipe.get("page:1")
            for i in range(9):
                pipe.get(f"page:missing:{i}")
            pipe.execute()

    with background(read):
        r, doc = triage(cli, s)
    assert r.code == 0, r.err
    f = findings(doc)["hit-rate"]
    assert 5 <= doc["nodes"][0]["hit_rate"] <= 15  # 1 hit in 10 lookups
    assert "minimum 90%" in f["evidence"][0]
