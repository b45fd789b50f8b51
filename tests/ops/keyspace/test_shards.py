"""Shards at once, without the CLI: parallel == sequential on a stable cluster (every key
exactly once, from the primary that owns its slot), the worker pool's bound, stop and
failure paths, the rate limiter's arithmetic, and exact counts when a delete is stopped."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest
from helpers.keyspace import client_for, unique_prefix

from closeup_ops.connect.redis import connect
from closeup_ops.errors import Interrupted
from closeup_ops.ops.keyspace import rate as rate_mod
from closeup_ops.ops.keyspace import scan as keyspace_scan
from closeup_ops.ops.keyspace import shards as shards_mod
from closeup_ops.ops.keyspace.delete import delete_keys
from closeup_ops.ops.keyspace.keys import guard, iter_keys
from closeup_ops.ops.keyspace.rate import RateLimiter
from closeup_ops.ops.keyspace.shards import DONE, fan_out
from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, ScanStats
from closeup_ops.ops.keyspace.summary import summarize
from closeup_ops.settings import load


def target_for(server):
    return connect(load({"host": server.host, "port": str(server.port)}))


@pytest.fixture
def cluster_keys(redis_cluster):
    """4000 `a` keys with a TTL and 4000 `b` keys without, names made here."""
    client = client_for(redis_cluster)
    prefix = unique_prefix("par")
    expected = {f"{prefix}:a:{i}": True for i in range(4000)}
    expected.update({f"{prefix}:b:{i}": False for i in range(4000)})
    pipe = client.pipeline(transaction=False)
    for n, (key, with_ttl) in enumerate(expected.items()):
        pipe.set(key, "v" * (n % 50), ex=600 if with_ttl else None)
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    yield prefix, expected, client
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def owner_of(client, key: str) -> str:
    node = client.get_node_from_key(key)
    return f"{node.host}:{node.port}"


def test_parallel_lists_what_sequential_lists(redis_cluster, cluster_keys, monkeypatch):
    prefix, expected, client = cluster_keys
    threads: set[str] = set()
    real_init = keyspace_scan.NodeChannel.__init__

    def recording(self, *a, **kw):
        threads.add(threading.current_thread().name)
        real_init(self, *a, **kw)

    monkeypatch.setattr(keyspace_scan.NodeChannel, "__init__", recording)
    target = target_for(redis_cluster.entry)
    seen = {}
    try:
        for parallel in (1, 8):
            threads.clear()
            stats = ScanStats()
            rows = []
            with guard(stats):
                for batch in iter_keys(
                    target,
                    ScanSpec(f"{prefix}:*", count=100),
                    stats,
                    ttl=True,
                    reach=Reach(parallel=parallel),
                ):
                    pairs = zip(batch.keys, batch.ttl_ms, strict=True)
                    rows += [(k.decode(), t, batch.node) for k, t in pairs]
            keys = [r[0] for r in rows]
            assert len(keys) == len(expected) and set(keys) == set(expected)  # each once
            assert all((t > 0) == expected[k] and t != -2 for k, t, _ in rows)
            assert all(node == owner_of(client, k) for k, _, node in rows)
            assert stats.nodes == stats.nodes_done == 3 and stats.slot_map_changed is False
            seen[parallel] = sorted(keys)
            if parallel == 1:
                assert threads == {"MainThread"}
            else:  # the three shards were worked by three worker threads (here: CLUSTER SLOTS)
                assert threads == {"shard-0", "shard-1", "shard-2", "MainThread"}
        assert seen[1] == seen[8]
        one = summarize(target, ScanSpec(f"{prefix}:*"), depth=2, reach=Reach(parallel=1))
        many = summarize(target, ScanSpec(f"{prefix}:*"), depth=2, reach=Reach(parallel=8))
    finally:
        target.close()

    def shape(s):
        return sorted((n.namespace, n.keys, n.with_ttl, n.total_bytes) for n in s.namespaces)

    assert shape(one) == shape(many)
    assert one.keys == many.keys == len(expected)
    assert [b.bytes for b in one.biggest] == [b.bytes for b in many.biggest]


def test_limit_is_exact_across_shards(redis_cluster, cluster_keys):
    prefix, expected, _ = cluster_keys
    target = target_for(redis_cluster.entry)
    try:
        stats = ScanStats()
        got = [
            k
            for b in iter_keys(target, ScanSpec(f"{prefix}:*", limit=777, count=50), stats)
            for k in b.keys
        ]
        assert len(got) == len(set(got)) == 777 == stats.listed
        assert {k.decode() for k in got} <= set(expected)
    finally:
        target.close()


def test_delete_stopped_mid_run_counts_exactly(redis_cluster, cluster_keys, tmp_path, monkeypatch):
    """Ctrl-C while three shards UNLINK at once: the count said is what left the server."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    prefix, expected, client = cluster_keys
    calls = [0]

    def progress(stats):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt

    target = target_for(redis_cluster.entry)
    try:
        with pytest.raises(Interrupted) as caught:
            delete_keys(target, ScanSpec(f"{prefix}:*", count=100), yes=True, progress=progress)
    finally:
        target.close()
    left = sum(1 for _ in client.scan_iter(f"{prefix}:*", count=1000))
    import re

    said = int(re.search(r"deleted (\d+)", caught.value.message).group(1))
    assert 0 < said < len(expected)
    assert said == len(expected) - left


# --- the worker pool ------------------------------------------------------------------------


def test_fan_out_bounds_concurrency_and_delivers_everything():
    lock = threading.Lock()
    active = [0, 0]  # now, most

    def job(n):
        def run():
            with lock:
                active[0] += 1
                active[1] = max(active[1], active[0])
            try:
                for i in range(50):
                    time.sleep(0.001)  # let the other workers run (not an outcome)
                    yield (n, i)
            finally:
                with lock:
                    active[0] -= 1

        return run

    stop = threading.Event()
    items, done = [], []
    for index, item in fan_out([job(n) for n in range(6)], 2, stop):
        (done if item is DONE else items).append((index, item))
    assert sorted(i for _, i in items) == sorted((n, i) for n in range(6) for i in range(50))
    assert sorted(i for i, _ in done) == list(range(6))
    assert active[1] <= 2 and active[0] == 0


def test_fan_out_raises_a_job_failure_and_stops_the_others():
    closed = []

    def endless(n):
        def run():
            try:
                while True:
                    yield n
            finally:
                closed.append(n)

        return run

    def failing():
        yield "x"
        raise ValueError("boom")

    stop = threading.Event()
    with pytest.raises(ValueError, match="boom"):
        for _ in fan_out([endless(0), failing, endless(2)], 3, stop):
            pass
    assert stop.is_set() and sorted(closed) == [0, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("shard-")]


def test_fan_out_closed_early_stops_every_worker():
    closed = []

    def endless(n):
        def run():
            try:
                while True:
                    yield n
            finally:
                closed.append(n)

        return run

    stop = threading.Event()
    feed = fan_out([endless(n) for n in range(4)], 4, stop)
    assert [next(feed) for _ in range(10)]
    feed.close()
    assert sorted(closed) == [0, 1, 2, 3]
    assert not [t for t in threading.enumerate() if t.name.startswith("shard-")]


# --- the rate limiter (on a clock of our own: no timing in the assertion) ---------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds


@pytest.mark.parametrize("sizes", [[1] * 500, [50] * 20, [300, 1, 700, 2, 997]])
def test_rate_limiter_spends_exactly_count_over_rate_minus_one_bucket(monkeypatch, sizes):
    clock = FakeClock()
    monkeypatch.setattr(rate_mod, "time", clock)
    limiter = RateLimiter(200)  # a bucket of 20 commands
    start = clock.now
    for n in sizes:
        limiter.take(n)
    total = sum(sizes)
    assert limiter.sent == total
    # Every command sent by time t is paid for: sent <= burst + rate * t.
    assert clock.now - start == pytest.approx((total - limiter.burst) / 200)


def test_rate_limiter_refills_while_idle_but_never_above_a_bucket(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_mod, "time", clock)
    limiter = RateLimiter(100)  # bucket 10
    limiter.take(10)
    assert clock.slept == 0
    clock.now += 60  # a minute idle earns one bucket, not 6000 commands
    limiter.take(30)
    assert clock.slept == pytest.approx(0.2)


# --- how many shards at once by default ----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "here"),
    [
        ("127.0.0.1:6379", True),
        ("127.8.9.10:7000", True),
        ("[::1]:6379", True),
        ("localhost:6379", True),
        ("LOCALHOST:1", True),
        ("10.0.3.7:6379", False),
        ("[2001:db8::1]:6379", False),
        ("clustercfg.c1.abc123.use1.cache.amazonaws.com:6379", False),
        ("my-cache-abc123.serverless.use1.cache.amazonaws.com:6379", False),
    ],
)
def test_on_this_machine_only_for_loopback_never_resolving_names(address, here):
    assert shards_mod.on_this_machine(address) is here


def _shards(addresses, replicas=()):
    """Shard stand-ins with only what choose_parallel reads: where each may be read from."""
    return [
        shards_mod.Shard(shards_mod.ShardRead(a, a, "primary"), None, None, list(replicas))
        for a in addresses
    ]


@pytest.mark.parametrize(
    ("hosts", "cores", "asked", "expected"),
    [
        ([f"10.0.0.{i}" for i in range(30)], 2, None, 8),  # remote: 8 at once, any cores
        ([f"10.0.0.{i}" for i in range(3)], 2, None, 3),  # never more than the shards
        (["127.0.0.1"] * 6, 2, None, 2),  # all here: the cores
        (["127.0.0.1"] * 6, 1, None, 1),
        (["127.0.0.1"] * 6, 64, None, 6),
        (["127.0.0.1"] * 5 + ["10.0.0.9"], 2, None, 6),  # not all here: as remote
        (["127.0.0.1"] * 6, 2, 5, 5),  # --parallel given: as given
        ([f"10.0.0.{i}" for i in range(30)], 2, 1, 1),
    ],
)
def test_choose_parallel(monkeypatch, hosts, cores, asked, expected):
    monkeypatch.setattr(shards_mod.os, "sched_getaffinity", lambda pid: set(range(cores)))
    shards = _shards([f"{h}:{6379 + i}" for i, h in enumerate(hosts)])
    assert shards_mod.choose_parallel(asked, shards) == expected


def test_choose_parallel_counts_the_replicas_read_under_replicas(monkeypatch):
    """A local primary whose replica is remote (what --replicas would read) is not 'here'."""
    monkeypatch.setattr(shards_mod.os, "sched_getaffinity", lambda pid: {0, 1})
    remote_replica = [("10.0.0.5:6379", None)]
    assert shards_mod.choose_parallel(None, _shards(["127.0.0.1:7000"] * 4, remote_replica)) == 4
    local_replica = [("127.0.0.1:7100", None)]
    assert shards_mod.choose_parallel(None, _shards(["127.0.0.1:7000"] * 4, local_replica)) == 2


def test_local_cluster_by_default_runs_as_many_shards_as_cores(
    redis_cluster, cluster_keys, monkeypatch
):
    """On the test cluster (3 primaries on loopback) the reports say how many shards ran
    at once: the cores this process may use, unless --parallel says otherwise."""
    prefix, expected, _ = cluster_keys
    target = target_for(redis_cluster.entry)
    spec = ScanSpec(f"{prefix}:*")
    for cores, asked, want in [({0}, None, 1), ({0, 1}, None, 2), ({0}, 3, 3)]:
        monkeypatch.setattr(shards_mod.os, "sched_getaffinity", lambda pid, c=cores: c)
        report = summarize(target, spec, reach=Reach(parallel=asked))
        assert (report.parallel, report.keys) == (want, len(expected))


# --- a plain listing: shards multiplexed in one thread ------------------------------------


def test_plain_listing_multiplexes_the_shards_in_one_thread(
    redis_cluster, cluster_keys, monkeypatch
):
    """Without per-key commands, shards at once run in the caller's thread on sockets
    waited on together: every key exactly once, from the node owning its slot, the same
    as one shard after the other, never more channels open than --parallel."""
    prefix, expected, client = cluster_keys
    threads: set[str] = set()
    open_now, most = [0], [0]
    real_init, real_close = keyspace_scan.NodeChannel.__init__, keyspace_scan.NodeChannel.close

    def opening(self, *a, **kw):
        real_init(self, *a, **kw)
        threads.add(threading.current_thread().name)
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])

    def closing_(self):
        if not self._closed:
            open_now[0] -= 1
        real_close(self)

    monkeypatch.setattr(keyspace_scan.NodeChannel, "__init__", opening)
    monkeypatch.setattr(keyspace_scan.NodeChannel, "close", closing_)
    target = target_for(redis_cluster.entry)
    seen = {}
    try:
        for parallel in (1, 2, 3):
            threads.clear()
            most[0] = 0
            stats = ScanStats()
            rows = []
            with guard(stats):
                spec = ScanSpec(f"{prefix}:*", count=100)
                for batch in iter_keys(target, spec, stats, reach=Reach(parallel=parallel)):
                    rows += [(k.decode(), batch.node) for k in batch.keys]
            keys = [k for k, _ in rows]
            assert len(keys) == len(expected) and set(keys) == set(expected)
            assert all(node == owner_of(client, k) for k, node in rows)
            assert stats.nodes == stats.nodes_done == 3 and stats.slot_map_changed is False
            assert threads == {"MainThread"} and most[0] == parallel, (parallel, threads, most)
            assert open_now[0] == 0
            seen[parallel] = sorted(keys)
    finally:
        target.close()
    assert seen[1] == seen[2] == seen[3]


def test_plain_listing_a_silent_node_times_out_with_the_count(tmp_path, monkeypatch):
    """A node that stops answering mid-scan (SIGSTOP) is given up after REDIS_TIMEOUT,
    as in the threaded path: ConnectionLost -> exit 3 with what was scanned."""
    from closeup_ops.errors import ConnectError
    from closeup_ops.local.cluster import start_cluster

    cluster = start_cluster(tmp_path / "silent", 3, 0)
    paused = []
    try:
        client = client_for(cluster)
        prefix = unique_prefix("silent")
        pipe = client.pipeline(transaction=False)
        for i in range(9000):
            pipe.set(f"{prefix}:{i}", "v")
        pipe.execute()
        client.close()
        by_address = {n.address: n for n in cluster.nodes}
        real = keyspace_scan.NodeChannel._fill
        count = [0]

        def fill_then_pause(self):
            count[0] += 1
            if count[0] == 20:
                node = by_address[self.address]
                os.kill(node.pid, signal.SIGSTOP)
                paused.append(node)
            return real(self)

        monkeypatch.setattr(keyspace_scan.NodeChannel, "_fill", fill_then_pause)
        settings = load({"host": cluster.entry.host, "port": str(cluster.entry.port)})
        target = connect(dataclasses.replace(settings, timeout=1.0))
        stats = ScanStats()
        outcome: list[BaseException] = []

        def scan() -> None:
            try:
                with guard(stats):
                    for _ in iter_keys(target, ScanSpec(f"{prefix}:*", count=100), stats):
                        pass
            except BaseException as exc:  # what the command would turn into its exit
                outcome.append(exc)

        worker = threading.Thread(target=scan, daemon=True)
        worker.start()
        worker.join(30)  # a scan that never gives up fails here instead of hanging the suite
        assert not worker.is_alive(), "the scan still waits for the paused node"
        assert paused and len(outcome) == 1 and isinstance(outcome[0], ConnectError), outcome
        message = outcome[0].message
        assert "timed out" in message and f"scanned {stats.scanned} keys" in message, message
        assert 0 < stats.scanned < 9000
    finally:
        for node in paused:
            os.kill(node.pid, signal.SIGCONT)
        cluster.stop()


def test_plain_listing_multiplexes_tls_nodes(tmp_path, tls_files):
    """The same over TLS: replies of several TLS records (COUNT 2000 of 60-byte keys), the
    sockets waited on together, every key exactly once."""
    from redis.cluster import RedisCluster

    from closeup_ops.local.cluster import start_cluster
    from closeup_ops.local.servers import EngineLacks

    try:
        cluster = start_cluster(tmp_path / "tls", 3, 0, tls=tls_files)
    except EngineLacks as exc:  # the Valkey pass: that build has no TLS
        pytest.skip(str(exc))
    try:
        host, port = cluster.entry.host, cluster.entry.port
        client = RedisCluster(host=host, port=port, ssl=True, ssl_ca_certs=str(tls_files.ca))
        prefix = unique_prefix("tlsmx")
        expected = {f"{prefix}:{'x' * 40}:{i}" for i in range(8000)}
        pipe = client.pipeline(transaction=False)
        for key in expected:
            pipe.set(key, "v")
        pipe.execute()
        client.close()
        target = connect(
            load({"host": host, "port": str(port), "tls": "true", "ca_cert": str(tls_files.ca)})
        )
        stats = ScanStats()
        keys = []
        with guard(stats):
            for batch in iter_keys(target, ScanSpec(f"{prefix}:*", count=2000), stats):
                keys += [k.decode() for k in batch.keys]
        target.close()
        assert stats.parallel > 1 and stats.nodes_done == 3  # multiplexed
        assert len(keys) == len(expected) and set(keys) == expected
    finally:
        cluster.stop()
