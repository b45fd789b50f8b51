"""ops/aws/events.py through botocore's Stubber (moto implements neither DescribeEvents nor
DescribeUpdateActions): every request is checked against the real API model, so the
sources, the window and the pagination asked for are the ones AWS documents."""

from __future__ import annotations

import datetime as dt

from botocore.stub import ANY
from helpers.aws import stubbed

from closeup_ops.ops.aws.events import PENDING, cache_events, kind_of
from closeup_ops.ops.aws.lookup import CacheFacts

NOW = dt.datetime(2026, 1, 13, 4, 0, tzinfo=dt.timezone.utc)


def event(minutes_ago: int, source: str, message: str, source_type: str = "cache-cluster"):
    return {
        "SourceIdentifier": source,
        "SourceType": source_type,
        "Message": message,
        "Date": NOW - dt.timedelta(minutes=minutes_ago),
    }


def expect_events(stub, source_type, ident, pages, since_s=3600):
    for i, page in enumerate(pages):
        params = {
            "SourceIdentifier": ident,
            "SourceType": source_type,
            "StartTime": NOW - dt.timedelta(seconds=since_s),
            "EndTime": NOW,
            "MaxRecords": 100,
        }
        if i:
            params["Marker"] = f"m{i}"
        response = {"Events": page}
        if i < len(pages) - 1:
            response["Marker"] = f"m{i + 1}"
        stub.add_response("describe_events", response, params)


def group() -> CacheFacts:
    return CacheFacts(
        "demo", "replication-group", "available", member_clusters=["demo-001", "demo-002"]
    )


def test_group_and_members_paginated_newest_first_then_updates():
    ec, stub = stubbed("elasticache")
    expect_events(
        stub,
        "replication-group",
        "demo",
        [
            [event(50, "demo", "Failover to replica node demo-002 completed", "replication-group")],
            [event(5, "demo", "Snapshot succeeded for snapshot with ID 'x'", "replication-group")],
        ],
    )
    expect_events(
        stub, "cache-cluster", "demo-001", [[event(49, "demo-001", "Recovering cache nodes 0001")]]
    )
    expect_events(stub, "cache-cluster", "demo-002", [[]])
    stub.add_response(
        "describe_update_actions",
        {
            "UpdateActions": [
                {
                    "ReplicationGroupId": "demo",
                    "ServiceUpdateName": "elasticache-20260101-002",
                    "ServiceUpdateSeverity": "low",
                    "UpdateActionStatus": "not-applied",
                },
                {
                    "ReplicationGroupId": "demo",
                    "ServiceUpdateName": "elasticache-20251201-001",
                    "ServiceUpdateSeverity": "critical",
                    "UpdateActionStatus": "scheduled",
                    "ServiceUpdateRecommendedApplyByDate": NOW + dt.timedelta(days=3),
                },
            ]
        },
        {"ReplicationGroupIds": ["demo"], "UpdateActionStatus": PENDING, "MaxRecords": 100},
    )
    with stub:
        report = cache_events(ec, group(), 3600, now=NOW)
    stub.assert_no_pending_responses()
    assert [(e.source, e.kind) for e in report.events] == [
        ("demo", "snapshot"),
        ("demo-001", "node-replacement"),
        ("demo", "failover"),
    ]
    assert report.events[0].at == (NOW - dt.timedelta(minutes=5)).isoformat(timespec="seconds")
    assert report.sources == ["demo", "demo-001", "demo-002"] and not report.truncated
    assert [u.severity for u in report.updates] == ["critical", "low"]
    assert report.updates[0].apply_by.startswith("2026-01-16")


def test_serverless_events_and_no_update_actions():
    ec, stub = stubbed("elasticache")
    expect_events(stub, "serverless-cache", "sl", [[event(1, "sl", "Serverless cache sl scaled")]])
    with stub:  # no DescribeUpdateActions call: the stub would refuse an unexpected one
        report = cache_events(ec, CacheFacts("sl", "serverless", "available"), 3600, now=NOW)
    assert [e.kind for e in report.events] == ["scaling"]
    assert "updated by AWS" in report.updates_note


def test_window_is_cut_to_the_14_days_aws_keeps():
    ec, stub = stubbed("elasticache")
    expect_events(stub, "cache-cluster", "single", [[]], since_s=14 * 86400)
    stub.add_response(
        "describe_update_actions",
        {"UpdateActions": []},
        {"CacheClusterIds": ["single"], "UpdateActionStatus": ANY, "MaxRecords": 100},
    )
    with stub:
        report = cache_events(
            ec, CacheFacts("single", "cache-cluster", "available"), 30 * 86400, now=NOW
        )
    assert report.since_s == 14 * 86400 and "14 days" in report.note
    assert report.events == [] and report.updates_note == "no pending service updates"


def test_kinds_from_messages():
    # messages as the ElastiCache event catalogue words them
    assert (
        kind_of("Failover from master node demo-001 to replica node demo-002 completed")
        == "failover"
    )
    assert kind_of("Cache node 0001 restarted") == "node-replacement"
    assert kind_of("Recovering cache nodes 0001") == "node-replacement"
    assert kind_of("Service update elasticache-2026 applied") == "maintenance"
    assert kind_of("Snapshot succeeded for snapshot with ID 'demo-x'") == "snapshot"
    assert kind_of("Something unusual") == "other"


def test_a_group_with_many_members_is_asked_once_for_its_members_events():
    members = [f"big-{i:04d}-001" for i in range(1, 13)]  # 12 shards
    ec, stub = stubbed("elasticache")
    expect_events(stub, "replication-group", "big", [[]])
    start = NOW - dt.timedelta(seconds=3600)
    stub.add_response(
        "describe_events",
        {
            "Events": [
                event(3, "big-0007-001", "Cache node 0001 restarted"),
                event(4, "other-cache-001", "Cache node 0001 restarted"),  # not ours
            ]
        },
        {"SourceType": "cache-cluster", "StartTime": start, "EndTime": NOW, "MaxRecords": 100},
    )
    stub.add_response("describe_update_actions", {"UpdateActions": []}, None)
    facts = CacheFacts("big", "replication-group", "available", member_clusters=members)
    with stub:
        report = cache_events(ec, facts, 3600, now=NOW)
    stub.assert_no_pending_responses()
    assert [e.source for e in report.events] == ["big-0007-001"]
    assert report.sources == ["big", *members]
