"""Rates from two INFO reads, and the findings built on them, from INFO documents the test
writes itself (the fields and formats of redis-py's parsed INFO): rejected connections
rising (hard to produce on a real server without the triage's own connections being
refused too), a restarted server's counters, and the ranking of findings."""

from __future__ import annotations

from closeup_ops.ops.thresholds import Thresholds
from closeup_ops.ops.triage.collect import node_report
from closeup_ops.ops.triage.findings import all_findings


def info(**fields):
    base = {
        "role": "master",
        "used_memory": 10 << 20,
        "maxmemory": 100 << 20,
        "maxmemory_policy": "allkeys-lru",
        "connected_clients": 50,
        "maxclients": 10000,
        "total_commands_processed": 0,
        "evicted_keys": 0,
        "rejected_connections": 0,
        "keyspace_hits": 0,
        "keyspace_misses": 0,
        "master_repl_offset": 0,
        "db0": {"keys": 10, "expires": 5},
    }
    base.update(fields)
    return base


def test_rejected_connections_rising_are_critical_even_below_maxclients():
    before = (100.0, info(rejected_connections=10, total_commands_processed=1000), None, None)
    after = (102.0, info(rejected_connections=30, total_commands_processed=5000), None, None)
    node = node_report("n1:6379", before, after)
    assert node.rejected_per_s == 10.0 and node.ops_per_s == 2000.0
    (f,) = all_findings([node], False, None, None, None, None, None, Thresholds())
    assert f.id == "maxclients" and f.severity == "critical" and "rejecting 10/s" in f.title


def test_a_restarted_server_gives_no_negative_rates():
    before = (0.0, info(evicted_keys=900, total_commands_processed=10**6), None, None)
    after = (1.0, info(evicted_keys=3, total_commands_processed=50), None, None)
    node = node_report("n1:6379", before, after)
    assert node.evictions_per_s == 0.0 and node.ops_per_s == 0.0


def test_critical_findings_come_first():
    full = info(used_memory=95 << 20)  # 95%: a warning under an evicting policy
    evicting = (0.0, info(evicted_keys=0), None, None), (1.0, info(evicted_keys=500), None, None)
    nodes = [
        node_report("a:1", (0.0, full, None, None), (1.0, full, None, None)),
        node_report("b:1", *evicting),
    ]
    found = all_findings(nodes, False, None, None, None, None, None, Thresholds())
    assert [(f.id, f.severity) for f in found] == [
        ("evictions", "critical"),
        ("memory-full", "warning"),
    ]
