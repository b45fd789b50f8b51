"""--trigger aws: TestFailover and DescribeEvents through botocore's Stubber (moto implements
neither), handed to the ops function as its `elasticache` client. The Redis side is real: a
primary/replica pair behind the endpoint proxy; when the stubbed TestFailover call returns,
an after-call hook starts the outage the way ElastiCache would (primary gone, replica
promoted, the endpoint's DNS switched)."""

from __future__ import annotations

import datetime
import time

import boto3
import pytest
from botocore.stub import ANY, Stubber
from helpers.failover import Injector, client_for, events, probe_keys, wait_until

from closeup_ops.errors import AwsResourceError, UsageError
from closeup_ops.ops.failover.run import FailoverOptions, run_failover_test
from closeup_ops.settings import load

pytestmark = pytest.mark.slow

GROUP = "demo"
NODE1, NODE2 = "demo-0001-001", "demo-0001-002"


def elasticache():
    return boto3.client(
        "elasticache",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def group(
    primary: str,
    failover: str = "enabled",
    status: str = "available",
    members: list[str] | None = None,
) -> dict:
    return {
        "ReplicationGroupId": GROUP,
        "Status": status,
        "AutomaticFailover": failover,
        "MemberClusters": [NODE1, NODE2] if members is None else members,
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "Status": "available",
                "PrimaryEndpoint": {
                    "Address": "master.demo.abc123.use1.cache.amazonaws.com",
                    "Port": 6379,
                },
                "NodeGroupMembers": [
                    {
                        "CacheClusterId": n,
                        "CacheNodeId": "0001",
                        "CurrentRole": "primary" if n == primary else "replica",
                    }
                    for n in (NODE1, NODE2)
                ],
            }
        ],
    }


def stub_find_cache(stub: Stubber, desc: dict) -> None:
    """The calls closeup_ops.connect.aws.find_cache makes for --cache demo."""
    stub.add_client_error(
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        expected_params={"ServerlessCacheName": GROUP},
    )
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [desc]}, {"ReplicationGroupId": GROUP}
    )
    # the members, from one paginated DescribeCacheClusters
    stub.add_response(
        "describe_cache_clusters",
        {
            "CacheClusters": [
                {"CacheClusterId": member, "ReplicationGroupId": GROUP}
                for member in desc["MemberClusters"]
            ]
        },
        {"ShowCacheNodeInfo": True},
    )


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env

    def make(**flags: str):
        return load(flags, environ={})

    return make


def test_trigger_aws_calls_test_failover_and_puts_events_on_the_timeline(pair, settings_for):
    client = elasticache()
    stub = Stubber(client)
    # ElastiCache dates its events as they happen: from when TestFailover is called (after
    # the probe started), not from when this test began - on a loaded machine the setup
    # can take seconds, and a completion dated before the run does not end the reading of
    # events. The dates are set in the TestFailover hook below: the stubbed responses are
    # handed back as these very dicts.
    dated: list[tuple[dict, float]] = []

    def event(source: str, kind: str, message: str, after_s: float = 0.0) -> dict:
        e = {"SourceIdentifier": source, "SourceType": kind, "Message": message,
             "Date": datetime.datetime.now(datetime.timezone.utc)}  # fmt: skip
        dated.append((e, after_s))
        return e

    stub_find_cache(stub, group(NODE1))
    stub.add_response(
        "test_failover",
        {"ReplicationGroup": group(NODE1)},
        {"ReplicationGroupId": GROUP, "NodeGroupId": "0001"},
    )
    stub.add_response(
        "describe_events",
        {
            "Events": [
                event(GROUP, "replication-group", "Test Failover API called for node group 0001"),
                event(
                    GROUP,
                    "replication-group",
                    f"Failover from primary node {NODE1} to replica node {NODE2} completed",
                    after_s=2,
                ),
            ]
        },
        {
            "SourceIdentifier": GROUP,
            "SourceType": "replication-group",
            "StartTime": ANY,
            "EndTime": ANY,
            "MaxRecords": 100,
        },
    )
    stub.add_response(
        "describe_events",
        {
            "Events": [
                event(NODE1, "cache-cluster", "Recovering cache nodes 0001"),
                event("other-cache-001", "cache-cluster", "not ours"),
            ]
        },
        {"SourceType": "cache-cluster", "StartTime": ANY, "EndTime": ANY, "MaxRecords": 100},
    )
    stub.add_response(
        "describe_replication_groups",
        {"ReplicationGroups": [group(NODE2)]},
        {"ReplicationGroupId": GROUP},
    )

    def outage(marks: dict) -> None:
        wait_until(lambda: len(probe_keys(pair.primary)) >= 3, "the probe to write")
        pair.primary.kill()
        time.sleep(0.5)  # the injected outage's length (what is measured, not a race)
        client_for(pair.replica).replicaof("NO", "ONE")
        pair.endpoint.set_upstream(("127.0.0.1", pair.replica.port))

    injector = Injector(outage)

    def failover_called(**_) -> None:
        called = datetime.datetime.now(datetime.timezone.utc)
        for e, after_s in dated:
            e["Date"] = called + datetime.timedelta(seconds=after_s)
        injector.start()

    client.meta.events.register("after-call.elasticache.TestFailover", failover_called)
    settings = settings_for(host="127.0.0.1", port=str(pair.endpoint.port), cache=GROUP)
    with stub:
        report = run_failover_test(
            settings,
            FailoverOptions(trigger="aws", duration=3, trigger_after=0.5, recovery_timeout=10),
            elasticache=client,
        )
        stub.assert_no_pending_responses()
    injector.result()
    assert report.result == "ok" and report.target == f"{GROUP} node group 0001"
    assert report.aws.primary_before == NODE1 and report.aws.primary_after == NODE2
    messages = [e.message for e in report.aws.events]
    assert "Recovering cache nodes 0001" in messages and "not ours" not in messages
    assert len(messages) == 3
    ev = events({"timeline": [vars(e) for e in report.timeline]})
    assert ev["trigger"]["detail"].startswith(f"TestFailover {GROUP} node group 0001")
    aws_lines = [e.detail for e in report.timeline if e.event == "aws event"]
    assert any("Failover from primary node" in line for line in aws_lines)
    # an attempt is stamped with its start: the first to fail may have begun just before the
    # trigger (the thread that calls TestFailover woke late); it was in flight then, and
    # cannot have ended before the trigger
    first = next(a for a in report.attempts if not a.ok)
    assert ev["first error"]["t"] == first.t
    assert first.t + first.latency_ms / 1000 >= ev["trigger"]["t"]
    assert "new primary" in ev and "recovery" in ev
    assert report.summary.downtime_s > 0.3 and report.summary.recovered


def test_trigger_aws_refused_when_automatic_failover_is_off(pair, settings_for):
    client = elasticache()
    stub = Stubber(client)
    stub_find_cache(stub, group(NODE1, failover="disabled", members=[]))
    settings = settings_for(host="127.0.0.1", port=str(pair.endpoint.port), cache=GROUP)
    with stub, pytest.raises(AwsResourceError) as caught:
        run_failover_test(settings, FailoverOptions(trigger="aws", duration=2), elasticache=client)
    assert caught.value.exit_code == 5
    assert "automatic failover is disabled" in caught.value.line()
    assert "--automatic-failover-enabled" in caught.value.line()
    assert probe_keys(pair.primary) == set()  # refused before any probe write


def test_trigger_aws_refused_for_a_serverless_cache(pair, settings_for):
    client = elasticache()
    stub = Stubber(client)
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [{"ServerlessCacheName": "sless", "Status": "available"}]},
        {"ServerlessCacheName": "sless"},
    )
    settings = settings_for(host="127.0.0.1", port=str(pair.endpoint.port), cache="sless")
    with stub, pytest.raises(UsageError) as caught:
        run_failover_test(settings, FailoverOptions(trigger="aws", duration=2), elasticache=client)
    assert "serverless" in caught.value.line() and "--trigger none" in caught.value.line()


def test_trigger_aws_unknown_shard_lists_node_groups(pair, settings_for):
    client = elasticache()
    stub = Stubber(client)
    stub_find_cache(stub, group(NODE1, members=[]))
    settings = settings_for(host="127.0.0.1", port=str(pair.endpoint.port), cache=GROUP)
    with stub, pytest.raises(UsageError) as caught:
        run_failover_test(
            settings, FailoverOptions(trigger="aws", shard="7", duration=2), elasticache=client
        )
    assert "use one of 0001" in caught.value.line()


def test_trigger_none_on_serverless_endpoint_is_not_refused_up_front():
    """--trigger none only measures, so a serverless endpoint passes the refusal check."""
    from closeup_ops.ops.failover.trigger import refuse_serverless

    settings = load({"host": "demo-du95w6.serverless.aps1.cache.amazonaws.com"}, environ={})
    refuse_serverless(settings, "none")
    with pytest.raises(UsageError):
        refuse_serverless(settings, "aws")


def test_trigger_aws_shard_picks_the_node_group(redis_plain, settings_for, monkeypatch):
    """--shard 2 sends TestFailover for node group 0002 (nothing fails over here: the stub
    only checks the call; the report then notes that no failover was observed)."""
    from closeup_ops.ops.failover import trigger

    monkeypatch.setattr(trigger, "EVENT_GRACE_S", 0.0)  # no events will come: read them once
    desc = group(NODE1, members=[])
    second = dict(desc["NodeGroups"][0], NodeGroupId="0002")
    desc["NodeGroups"] = [second, desc["NodeGroups"][0]]  # AWS order is not guaranteed
    client = elasticache()
    stub = Stubber(client)
    stub_find_cache(stub, desc)
    stub.add_response(
        "test_failover",
        {"ReplicationGroup": desc},
        {"ReplicationGroupId": GROUP, "NodeGroupId": "0002"},
    )
    for _ in range(2):
        stub.add_response("describe_events", {"Events": []})
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [desc]}, {"ReplicationGroupId": GROUP}
    )
    settings = settings_for(host=redis_plain.host, port=str(redis_plain.port), cache=GROUP)
    with stub:
        report = run_failover_test(
            settings,
            # a generous per-request timeout: a loaded machine's pause is no outage
            FailoverOptions(trigger="aws", shard="2", duration=0.6, trigger_after=0.1, timeout=5),
            elasticache=client,
        )
        stub.assert_no_pending_responses()
    assert report.target == f"{GROUP} node group 0002"
    assert report.summary.lost == 0 and report.summary.failed == 0
    assert any("no failover observed" in note for note in report.notes)


# --- issue 12 item 7: cluster mode, late events, capped listings ---------------------------


def _cluster_mode_group() -> tuple[dict, list[dict]]:
    """Cluster mode on: DescribeReplicationGroups sets no CurrentRole (it is documented for
    cluster mode off only); the members' node endpoints are in DescribeCacheClusters."""
    suffix = "demo.abc123.use1.cache.amazonaws.com"
    desc = {
        "ReplicationGroupId": GROUP,
        "Status": "available",
        "AutomaticFailover": "enabled",
        "ClusterEnabled": True,
        "MemberClusters": [NODE1, NODE2],
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "Slots": "0-16383",
                "NodeGroupMembers": [
                    {"CacheClusterId": n, "CacheNodeId": "0001"} for n in (NODE1, NODE2)
                ],
            }
        ],
    }
    members = [
        {
            "CacheClusterId": n,
            "ReplicationGroupId": GROUP,
            "CacheNodes": [
                {"CacheNodeId": "0001", "Endpoint": {"Address": f"{n}.{suffix}", "Port": 6379}}
            ],
        }
        for n in (NODE1, NODE2)
    ]
    return desc, members


def test_cluster_mode_primary_before_and_after_come_from_the_nodes(settings_for):
    from closeup_ops.ops.failover import run, trigger
    from closeup_ops.ops.failover.probe import NodeIdentity

    desc, members = _cluster_mode_group()
    client = elasticache()
    stub = Stubber(client)
    stub.add_client_error(
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        expected_params={"ServerlessCacheName": GROUP},
    )
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [desc]}, {"ReplicationGroupId": GROUP}
    )
    stub.add_response(
        "describe_cache_clusters", {"CacheClusters": members}, {"ShowCacheNodeInfo": True}
    )
    with stub:
        group = trigger.prepare_aws(client, settings_for(cache=GROUP), None)
    assert group.primary_node is None and group.cluster_mode  # AWS names no role
    started = datetime.datetime.now(datetime.timezone.utc)
    node1 = members[0]["CacheNodes"][0]["Endpoint"]
    node2 = members[1]["CacheNodes"][0]["Endpoint"]
    before = NodeIdentity(f"{node1['Address']}:{node1['Port']}", "a" * 40)
    after = NodeIdentity(f"{node2['Address']}:{node2['Port']}", "b" * 40)
    stub = Stubber(client)
    done = {
        "SourceIdentifier": GROUP,
        "SourceType": "replication-group",
        "Message": "Failover to replica node demo-0001-002 completed",
        "Date": started + datetime.timedelta(seconds=3),
    }
    stub.add_response("describe_events", {"Events": [done]})
    stub.add_response("describe_events", {"Events": []})
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [desc]}, {"ReplicationGroupId": GROUP}
    )
    notes: list[str] = []
    with stub:
        section = run._aws_after(client, group, started, notes, before, after)
    assert (section.primary_before, section.primary_after) == (NODE1, NODE2)
    assert notes == []
    # a node address that is no member's endpoint (e.g. an announced IP) is shown as such
    ip = NodeIdentity("10.0.1.5:6379", "c" * 40)
    assert trigger.node_name(group, ip) == "10.0.1.5:6379 (from the nodes)"


class FakeTime:
    def __init__(self, start: datetime.datetime):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += datetime.timedelta(seconds=seconds)


def _aws_group():
    from closeup_ops.ops.failover.trigger import AwsGroup

    return AwsGroup(GROUP, "0001", NODE1, members=[NODE1, NODE2])


def test_recovery_events_after_the_run_are_collected_for_a_grace_period():
    from closeup_ops.ops.failover import trigger

    started = datetime.datetime(2026, 1, 13, 10, 0, 0, tzinfo=datetime.timezone.utc)
    ended = started + datetime.timedelta(seconds=30)
    clock = FakeTime(ended)
    called = {
        "SourceIdentifier": GROUP,
        "SourceType": "replication-group",
        "Message": "Test Failover API called for node group 0001",
        "Date": started + datetime.timedelta(seconds=2),
    }
    late = {
        "SourceIdentifier": NODE1,
        "SourceType": "cache-cluster",
        "Message": "Finished recovery for cache nodes 0001",
        "Date": ended + datetime.timedelta(seconds=8),
    }
    client = elasticache()
    stub = Stubber(client)
    group_params = {
        "SourceIdentifier": GROUP,
        "SourceType": "replication-group",
        "StartTime": started - datetime.timedelta(seconds=60),
        "MaxRecords": 100,
    }
    node_params = {"SourceType": "cache-cluster", "StartTime": group_params["StartTime"]}
    # at the end of the run: only the API call is listed
    stub.add_response(
        "describe_events",
        {"Events": [called]},
        dict(group_params, EndTime=ended + datetime.timedelta(seconds=5)),
    )
    stub.add_response(
        "describe_events",
        {"Events": []},
        dict(node_params, EndTime=ended + datetime.timedelta(seconds=5), MaxRecords=100),
    )
    # one poll later the recovery is there
    later = ended + datetime.timedelta(seconds=trigger.EVENT_POLL_S)
    stub.add_response("describe_events", {"Events": [called]}, dict(group_params, EndTime=later))
    stub.add_response(
        "describe_events", {"Events": [late]}, dict(node_params, EndTime=later, MaxRecords=100)
    )
    with stub:
        events, capped = trigger.collect_events(
            client, _aws_group(), started, ended, clock.sleep, clock
        )
        stub.assert_no_pending_responses()
    assert [e.message for e in events] == [called["Message"], late["Message"]]
    assert events[-1].t == 38.0 and capped is None
    assert clock.sleeps == [trigger.EVENT_POLL_S]


def test_a_capped_event_listing_says_so():
    from closeup_ops.ops.failover import trigger

    started = datetime.datetime(2026, 1, 13, 10, 0, 0, tzinfo=datetime.timezone.utc)
    clock = FakeTime(started + datetime.timedelta(seconds=30))
    event = {
        "SourceIdentifier": GROUP,
        "SourceType": "replication-group",
        "Message": "Modification applied",
        "Date": started,
    }
    client = elasticache()
    stub = Stubber(client)
    for page in range(trigger.EVENT_PAGES):  # every page says there is more
        stub.add_response("describe_events", {"Events": [event], "Marker": f"m{page + 1}"})
    stub.add_response("describe_events", {"Events": []})
    with stub:
        events, capped = trigger.collect_events(
            client, _aws_group(), started, clock.now, clock.sleep, clock
        )
    assert len(events) == trigger.EVENT_PAGES
    assert capped is not None and "stopped at 2000 events" in capped
    assert clock.sleeps == []  # capped: no grace polling on top
