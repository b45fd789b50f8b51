"""`failover-test` against servers these tests own, with a known outage injected beside it:
the report must agree with what the test did (fixtures in conftest.py beside this file)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from helpers.common import server_env
from helpers.failover import Injector, client_for, events, probe_keys, wait_until

from closeup_ops.audit import read_entries

pytestmark = pytest.mark.slow


def test_injected_outage_downtime_matches(cli, pair, health_server):
    """Kill the primary, promote the replica and switch the endpoint after a known delay:
    the reported downtime matches the injected one within 100 ms plus the probe's sampling
    gap at the outage's edges (see edge_gap); the health URL's 503s during the outage are
    reported; the run is in the audit log."""
    delay = 1.2

    def outage(marks: dict) -> None:
        wait_until(lambda: len(probe_keys(pair.primary)) >= 10, "the probe to write")
        health_server.status_code = 503
        marks["t0"] = time.monotonic()
        pair.primary.kill()
        time.sleep(delay)
        client_for(pair.replica).replicaof("NO", "ONE")
        pair.endpoint.set_upstream(("127.0.0.1", pair.replica.port))
        marks["t1"] = time.monotonic()
        health_server.status_code = 200

    injector = Injector(outage)
    injector.start()
    r = cli(
        "failover-test",
        "--json",
        "--duration",  # room for the outage script to start late on a loaded machine
        "6",
        "--recovery-timeout",
        "10",
        "--max-downtime",
        "10",
        "--probe-url",
        health_server.url,
        env=pair.env(),
    )
    marks = injector.result()
    assert r.code == 0, r.err
    doc = r.json()
    injected = marks["t1"] - marks["t0"]
    s = doc["summary"]
    slack = edge_gap(doc["attempts"])
    assert abs(s["downtime_s"] - injected) <= 0.1 + slack, (s["downtime_s"], injected, slack)
    assert s["outages"] == 1 and s["recovered"] is True
    assert s["lost"] == 0  # the replica was streaming: every acknowledged write survived
    assert s["failed"] > 0 and s["acknowledged"] == s["attempted"] - s["write_failures"]
    assert set(s["errors_by_type"]) <= {
        "connection_closed",
        "connection_reset",
        "connection_refused",
        "connection_error",
        "timeout",
    }
    assert doc["primary_before"]["address"].endswith(f":{pair.primary.port}")
    assert doc["primary_after"]["address"].endswith(f":{pair.replica.port}")
    assert doc["primary_after"]["run_id"] != doc["primary_before"]["run_id"]
    ev = events(doc)
    assert {"start", "first error", "new primary", "recovery", "end"} <= set(ev)
    assert ev["first error"]["t"] < ev["recovery"]["t"] <= ev["new primary"]["t"]
    app = s["app"]
    assert app["statuses"].get("503", 0) > 0 and app["statuses"].get("200", 0) > 0
    assert "503" in app["during_outage"]
    assert "app unhealthy" in ev and "app healthy" in ev
    entry = read_entries()[-1]
    assert entry["command"] == "failover-test" and entry["result"] == "ok"
    assert entry["run_id"] == doc["run_id"] and entry["downtime_s"] == s["downtime_s"]
    assert probe_keys(pair.replica) == set()  # the tool cleaned up after itself


def edge_gap(attempts: list[dict]) -> float:
    """The probe's sampling gap at the edges of its one outage: the larger of (first failed
    attempt - the one before it) and (first good attempt after - the last failed one).

    The downtime is measured between attempt start times, from the first failed attempt F
    to the first good one G; the injected outage runs from t0 (just before the kill) to t1
    (just after the endpoint switch). The attempt before F succeeded, so it started before
    the kill: F starts at most gap(F) after t0 (and not before it, but for the injector's
    own overhead). The last failed attempt started before the switch: G starts at most
    gap(G) after t1 (and not before it, but for that overhead). So downtime - injected lies
    between -gap(F) and +gap(G), give or take the overhead (the 100 ms the test allows): the
    larger gap bounds the error, not the sum, as the two edges push opposite ways. On time
    each gap is one --interval (50 ms); a probe delayed at an edge widens its own gap by
    exactly as much as it can add to the error there."""
    first_failed = next(i for i, a in enumerate(attempts) if not a["ok"])
    first_good = next(i for i, a in enumerate(attempts) if i > first_failed and a["ok"])
    assert first_failed > 0, "the outage started before the probe's first attempt"
    return max(
        attempts[first_failed]["t"] - attempts[first_failed - 1]["t"],
        attempts[first_good]["t"] - attempts[first_good - 1]["t"],
    )


def test_deterministic_loss_counts_acknowledged_writes_gone(cli, pair_via_repl_proxy):
    """Pause the replica (SIGSTOP, and freeze its replication link so the kernel's socket
    buffer cannot hand it the writes later), keep writing, kill the primary, resume and
    promote the replica: writes_lost equals the acknowledged writes of the pause, computed
    here from the servers' data."""
    pair = pair_via_repl_proxy

    def outage(marks: dict) -> None:
        wait_until(lambda: len(probe_keys(pair.replica)) >= 10, "replicated probe writes")
        pair.repl.freeze_downstream()
        os.kill(pair.replica.pid, signal.SIGSTOP)
        frozen_at = len(probe_keys(pair.primary))
        # writes acknowledged by the primary only: wait until there are some
        wait_until(
            lambda: len(probe_keys(pair.primary)) >= frozen_at + 10, "writes during the pause"
        )
        pair.endpoint.hold()  # no new request reaches the primary ...
        on_primary = settled(lambda: probe_keys(pair.primary))  # ... in-flight ones answered
        time.sleep(0.1)  # the outage's length: part of the scenario (--max-downtime 0.01)
        pair.primary.kill()
        pair.repl.drop_all()
        os.kill(pair.replica.pid, signal.SIGCONT)
        replica = client_for(pair.replica)
        replica.replicaof("NO", "ONE")
        wait_until(lambda: replica.info("replication")["role"] == "master", "promotion")
        on_replica = probe_keys(pair.replica)
        marks["lost"] = len(on_primary - on_replica)
        marks["kept"] = len(on_primary & on_replica)
        pair.endpoint.set_upstream(("127.0.0.1", pair.replica.port))

    injector = Injector(outage)
    injector.start()
    r = cli(
        "failover-test",
        "--json",
        "--duration",  # room for the outage script to start late on a loaded machine
        "6",
        "--max-lost",
        "0",
        "--max-downtime",
        "0.01",
        "--recovery-timeout",
        "10",
        env=pair.env(),
    )
    marks = injector.result()
    assert marks["lost"] > 5 and marks["kept"] > 5  # the pause really lost writes
    doc = r.json()
    assert doc["summary"]["lost"] == marks["lost"], doc["summary"]
    assert len(doc["summary"]["lost_seqs"]) == min(100, marks["lost"])
    assert r.code == 6  # --max-lost 0 and --max-downtime 0.01 broken
    assert doc["result"] == "limits broken"
    errors = [line for line in r.err_lines if line.startswith("closeup-ops: error:")]
    assert len(errors) == 1
    assert "--max-downtime 0.01 s" in errors[0]
    assert f"{marks['lost']} acknowledged writes lost > --max-lost 0" in errors[0]
    assert doc["breaches"] and read_entries()[-1]["result"] == "limits broken"


def test_cluster_trigger_fails_over_chosen_shard(cli, own_cluster):
    """CLUSTER FAILOVER on a replica of shard 2: new primary detected, redirect followed,
    no writes lost."""
    r = cli(
        "failover-test",
        "--json",
        "--trigger",
        "cluster",
        "--shard",
        "2",
        "--duration",
        "4",
        "--max-lost",
        "0",
        env=server_env(own_cluster.entry),
    )
    assert r.code == 0, r.err
    doc = r.json()
    s = doc["summary"]
    assert doc["cluster"] is True and doc["target"].startswith("shard 2 ")
    assert s["lost"] == 0 and s["acknowledged"] > 20
    assert isinstance(s["downtime_s"], float | int)
    assert s["redirects"] >= 1
    before, after = doc["primary_before"], doc["primary_after"]
    assert before["address"] != after["address"] and before["run_id"] != after["run_id"]
    assert before["address"] in doc["target"]
    ev = events(doc)
    assert "CLUSTER FAILOVER" in ev["trigger"]["detail"]
    assert ev["new primary"]["t"] >= ev["trigger"]["t"]
    roles = client_for_address(after["address"]).info("replication")["role"]
    assert roles == "master"


def client_for_address(address: str):
    import redis

    host, _, port = address.rpartition(":")
    return redis.Redis(host=host, port=int(port))


def test_ctrl_c_exits_130_with_what_was_measured(cli, redis_plain):
    main = threading.main_thread().ident
    # the shared server may hold probe keys an earlier (failed) run left: count only this
    # run's, or SIGINT could land before the probe loop
    before = probe_keys(redis_plain)

    def interrupt() -> None:
        # interrupt once the probe has recorded more than 5 acknowledged writes. The probe
        # writes one key at a time and records an attempt (SET, then its read-back GET)
        # before it sends the next SET, so the server holding 7 probe keys means the first
        # 6 attempts are recorded; at 6 keys, the 6th may still be in its GET.
        wait_until(lambda: len(probe_keys(redis_plain) - before) > 6, "probe writes")
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    r = cli("failover-test", "--json", "--duration", "20", env=server_env(redis_plain))
    assert r.code == 130
    doc = r.json()
    assert doc["result"] == "interrupted"
    assert doc["summary"]["acknowledged"] > 5 and doc["summary"]["lost"] == 0
    assert "interrupted" in r.err
    assert read_entries()[-1]["result"] == "interrupted"


def test_cluster_primary_killed_trigger_none_follows_the_promotion(cli, own_cluster):
    """--trigger none while the test kills the primary serving the probe's slot: the cluster
    promotes its replica, the probe rediscovers the topology like a client would, and the
    report shows the outage, the new primary and no lost writes from a synced replica."""

    def serving_primary():
        for node in own_cluster.nodes:
            if node.alive() and probe_keys(node):
                if client_for(node).info("replication")["role"] == "master":
                    return node
        return None

    def outage(marks: dict) -> None:
        wait_until(
            lambda: serving_primary() is not None and len(probe_keys(serving_primary())) >= 10,
            "probe writes",
        )
        victim = serving_primary()
        marks["victim"] = victim.address
        # kill it the moment its replica has caught up (no write of the probe in limbo)
        wait_until(lambda: replica_caught_up(victim), "the replica to catch up", timeout=10)
        victim.kill()

    injector = Injector(outage)
    injector.start()
    r = cli(
        "failover-test",
        "--json",
        # The kill must land while the probe runs: the outage script first waits for 10
        # probe writes and the replica to catch up, which took over 3 s once on a loaded
        # 2-core CI machine (the probe had ended; the victim was killed after it).
        "--duration",
        "8",
        "--recovery-timeout",
        "20",
        env=server_env(next(n for n in own_cluster.nodes if n.alive())),
    )
    marks = injector.result()
    assert r.code == 0, r.err
    doc = r.json()
    s = doc["summary"]
    assert doc["primary_before"]["address"] == marks["victim"]
    assert doc["primary_after"]["address"] != marks["victim"]
    assert s["recovered"] and s["downtime_s"] > 0.5 and s["lost"] == 0
    assert set(s["errors_by_type"]) & {
        "connection_refused",
        "connection_reset",
        "connection_closed",
        "connection_error",
        "clusterdown",
        "timeout",
    }
    assert "new primary" in events(doc)


def settled(read, rounds: int = 3, timeout: float = 5.0):
    """`read()` once it gives the same answer `rounds` times in a row (bounded)."""
    deadline = time.monotonic() + timeout
    last, same = read(), 1
    while same < rounds and time.monotonic() < deadline:
        now = read()
        same = same + 1 if now == last else 1
        last = now
    return last


def replica_caught_up(primary) -> bool:
    info = client_for(primary).info("replication")
    replica = info.get("slave0")
    return bool(replica) and int(replica["offset"]) >= int(info["master_repl_offset"])


def test_sigterm_ends_the_run_like_ctrl_c_with_the_audit_line(tmp_path):
    """A runbook step's timeout or a cancelled job sends SIGTERM: the run still reports what
    it measured and writes its audit line, exit 130 (SPEC: interrupted), in a real process."""
    import json
    import subprocess
    import sys

    from closeup_ops.local.servers import start_redis

    server = start_redis(tmp_path / "server")  # its own: no probe keys of other tests
    env = {
        **os.environ,
        **server_env(server),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "closeup_ops", "failover-test", "--json", "--duration", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # 7 keys on the server: the first 6 attempts are recorded (see the Ctrl-C test above)
        wait_until(lambda: len(probe_keys(server)) > 6 or proc.poll() is not None, "probe")
        proc.terminate()  # SIGTERM, by PID
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["result"] == "interrupted" and doc["summary"]["acknowledged"] > 5
    log = tmp_path / "state" / "closeup-ops" / "audit.log"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["command"] for e in entries] == ["failover-test"]
    assert entries[0]["result"] == "interrupted"
