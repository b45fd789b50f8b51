"""The report's arithmetic on hand-made attempts: outages, downtime, counts, limits, the
timeline's order, the app's availability; and the probe's small pieces."""

from __future__ import annotations

import pytest
import redis.exceptions as rx
from redis.crc import key_slot

from closeup_ops.ops.failover.app import AppPoll, public_url
from closeup_ops.ops.failover.probe import (
    Attempt,
    NodeIdentity,
    error_type,
    keyspace_for,
    probe_timeout,
)
from closeup_ops.ops.failover.report import (
    Limits,
    app_summary,
    check_limits,
    find_outages,
    summarize,
    timeline,
)
from closeup_ops.ops.failover.trigger import parse_slots


def ok(seq: int, t: float) -> Attempt:
    return Attempt(seq, t, 1.0, True, True)


def bad(seq: int, t: float, error: str = "connection_refused", acked: bool = False) -> Attempt:
    return Attempt(seq, t, 1.0, acked, False, error)


ATTEMPTS = [
    ok(1, 0.0),
    ok(2, 0.05),
    bad(3, 0.10),
    bad(4, 0.15, "timeout"),
    ok(5, 0.40),
    ok(6, 0.45),
    bad(7, 0.50, "readonly"),
    ok(8, 0.60),
]


def test_outages_run_from_first_failed_to_first_good_write():
    outages = find_outages(ATTEMPTS, end=0.65)
    assert [(o.start, o.end, o.duration_s) for o in outages] == [
        (0.10, 0.40, 0.3),
        (0.50, 0.60, 0.1),
    ]
    assert outages[0].errors == {"connection_refused": 1, "timeout": 1}


def test_unrecovered_outage_runs_to_the_end():
    outages = find_outages([ok(1, 0.0), bad(2, 0.5)], end=2.0)
    assert outages[0].end is None and outages[0].duration_s == 1.5
    summary = summarize([ok(1, 0.0), bad(2, 0.5)], outages, [], 0, None)
    assert summary.recovered is False
    assert check_limits(summary, Limits(), 30) == [
        "writes did not recover within --recovery-timeout 30 s"
    ]


def test_summary_counts_and_limits():
    outages = find_outages(ATTEMPTS, end=0.65)
    s = summarize(ATTEMPTS, outages, [1, 2], 0, None)
    assert (s.attempted, s.acknowledged, s.failed, s.write_failures) == (8, 5, 3, 3)
    assert s.downtime_s == 0.4 and s.outages == 2 and s.lost == 2 and s.lost_seqs == [1, 2]
    assert s.errors_by_type == {"connection_refused": 1, "timeout": 1, "readonly": 1}
    assert check_limits(s, Limits(max_downtime=1, max_lost=2), 30) == []
    assert check_limits(s, Limits(max_downtime=0.25, max_lost=1), 30) == [
        "downtime 0.400 s > --max-downtime 0.25 s",
        "2 acknowledged writes lost > --max-lost 1",
    ]
    unknown = summarize(ATTEMPTS, outages, None, 0, None)
    assert unknown.lost is None
    assert "read-back failed" in check_limits(unknown, Limits(max_lost=0), 30)[0]


def test_acknowledged_but_unreadable_counts_as_failed_not_as_write_failure():
    attempts = [ok(1, 0.0), bad(2, 0.05, "timeout", acked=True), ok(3, 0.1)]
    s = summarize(attempts, find_outages(attempts, 0.1), [], 0, None)
    assert (s.acknowledged, s.failed, s.write_failures) == (3, 1, 0)


def test_app_summary_and_status_during_outage():
    polls = [
        AppPoll(0.0, 200, None, 1),
        AppPoll(0.2, 503, None, 1),
        AppPoll(0.3, None, "connection_refused", 1),
        AppPoll(0.45, 200, None, 1),
    ]
    app = app_summary("http://app/health", polls, find_outages(ATTEMPTS, 0.65))
    assert app.availability_pct == 50.0
    assert app.statuses == {"200": 2, "503": 1, "connection_refused": 1}
    assert app.during_outage == {"503": 1, "connection_refused": 1}


def test_timeline_order_and_new_primary():
    before = NodeIdentity("10.0.0.1:6379", "a" * 40, 0.0)
    after = NodeIdentity("10.0.0.2:6379", "b" * 40, 0.40)
    events = timeline(
        end=0.65,
        trigger=(0.05, "CLUSTER FAILOVER"),
        trigger_done=0.06,
        outages=find_outages(ATTEMPTS, 0.65),
        before=before,
        identities=[before, after, after],
        aws_events=[],
        polls=[],
    )
    names = [e.event for e in events]
    assert names == [
        "start",
        "trigger",
        "first error",
        "recovery",
        "new primary",
        "error",
        "recovery",
        "end",
    ]
    assert "returned after 0.010 s" in events[1].detail


@pytest.mark.parametrize(
    "exc, kind",
    [
        (rx.TimeoutError("Timeout reading from socket"), "timeout"),
        (TimeoutError("timed out"), "timeout"),
        (
            rx.ConnectionError("Error 111 connecting to x:1. Connection refused."),
            "connection_refused",
        ),
        (
            rx.ConnectionError("Error 104 while writing to socket. Connection reset by peer."),
            "connection_reset",
        ),
        (rx.ConnectionError("Connection closed by server."), "connection_closed"),
        (rx.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (rx.ResponseError("MASTERDOWN Link with MASTER is down"), "masterdown"),
        (rx.ClusterDownError("CLUSTERDOWN The cluster is down"), "clusterdown"),
        (rx.TryAgainError("TRYAGAIN"), "tryagain"),
        (rx.ResponseError("OOM command not allowed"), "error:oom"),
    ],
)
def test_error_types(exc, kind):
    assert error_type(exc) == kind


def test_probe_timeout_derivation():
    assert probe_timeout(0.05, 5) == 0.5
    assert probe_timeout(0.01, 5) == 0.25
    assert probe_timeout(1, 5) == 5
    assert probe_timeout(0.05, 0.2) == 0.2


def test_keyspace_lands_in_the_chosen_slots():
    slots = set(range(5461, 10923))
    keys = keyspace_for("abc", 600, slots)
    assert key_slot(keys.key(1).encode()) in slots
    assert key_slot(keys.key(1).encode()) == key_slot(keys.key(999).encode())
    assert keys.key(7).startswith("closeup-ops:failover:{abc-") and keys.key(7).endswith(":7")


def test_parse_slots_and_public_url():
    assert parse_slots("0-2,10") == {0, 1, 2, 10}
    assert parse_slots(None) is None
    assert public_url("http://user:pw@app:8080/health") == "http://app:8080/health"


def test_cluster_failover_refused_is_a_failed_check(redis_plain):
    """A node that refuses CLUSTER FAILOVER (here: cluster support disabled) -> exit 6."""
    import redis

    from closeup_ops.errors import CheckFailed
    from closeup_ops.ops.failover.trigger import Shard, cluster_failover

    shard = Shard(1, "127.0.0.1:1", [redis_plain.address], set())
    with pytest.raises(CheckFailed) as caught:
        cluster_failover(None, shard, lambda host, port: redis.Redis(host=host, port=port))
    assert caught.value.exit_code == 6
    assert "refused CLUSTER FAILOVER" in caught.value.line()
