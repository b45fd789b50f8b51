"""Snapshots: moto for replication groups and cache clusters; Stubber for serverless and for
status transitions (creating -> available, creating -> failed), which moto does not model."""

from __future__ import annotations

import datetime

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import Clock, not_found, serverless_desc, stubbed

from closeup_ops.connect import aws, cache_ref
from closeup_ops.errors import AwsResourceError
from closeup_ops.ops.aws import restore
from closeup_ops.ops.aws import snapshots as ops
from closeup_ops.settings import Settings

# pytest fixtures shared with the other AWS tests
aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def client():
    return boto3.client("elasticache", region_name="us-east-1")


def test_default_name_is_cache_and_utc_minute():
    when = datetime.datetime(2026, 1, 13, 4, 5, tzinfo=datetime.timezone.utc)
    assert ops.default_name("demo", when) == "demo-20260113-0405"


def test_create_list_get_delete_node_snapshots(moto_world):
    ec = client()
    group = aws.find_cache(Settings(cache="demo"), ec)
    single = aws.find_cache(Settings(cache="single"), ec)
    a = ops.create_snapshot(ec, group, "demo-snap")
    b = ops.create_snapshot(ec, single, "single-snap")
    assert (a.kind, a.cache) == (cache_ref.REPLICATION_GROUP, "demo")
    assert (b.kind, b.cache) == (cache_ref.CACHE_CLUSTER, "single")
    assert {s.name for s in ops.list_snapshots(ec)} == {"demo-snap", "single-snap"}
    assert [s.name for s in ops.list_snapshots(ec, group)] == ["demo-snap"]
    assert [s.name for s in ops.list_snapshots(ec, single)] == ["single-snap"]
    assert ops.get_snapshot(ec, "demo-snap").status == "available"
    ops.delete_snapshot(ec, a)
    with pytest.raises(AwsResourceError) as err:
        ops.get_snapshot(ec, "demo-snap")
    assert err.value.exit_code == 5


def test_create_uses_the_right_api_per_kind():
    ec, stub = stubbed("elasticache")
    snap = {
        "ServerlessCacheSnapshotName": "s1",
        "Status": "creating",
        "ServerlessCacheConfiguration": {
            "ServerlessCacheName": "demo",
            "Engine": "valkey",
            "MajorEngineVersion": "8",
        },
    }
    stub.add_response(
        "create_serverless_cache_snapshot",
        {"ServerlessCacheSnapshot": snap},
        {"ServerlessCacheSnapshotName": "s1", "ServerlessCacheName": "demo"},
    )
    stub.add_response(
        "create_snapshot",
        {"Snapshot": {"SnapshotName": "r1", "ReplicationGroupId": "rg"}},
        {"SnapshotName": "r1", "ReplicationGroupId": "rg"},
    )
    stub.add_response(
        "create_snapshot",
        {"Snapshot": {"SnapshotName": "c1", "CacheClusterId": "cc"}},
        {"SnapshotName": "c1", "CacheClusterId": "cc"},
    )
    with stub:
        s = ops.create_snapshot(ec, cache_ref.serverless_ref(serverless_desc("demo")), "s1")
        r = ops.create_snapshot(ec, cache_ref.CacheRef(cache_ref.REPLICATION_GROUP, "rg"), "r1")
        c = ops.create_snapshot(ec, cache_ref.CacheRef(cache_ref.CACHE_CLUSTER, "cc"), "c1")
    stub.assert_no_pending_responses()
    assert (s.kind, s.cache, s.status) == (cache_ref.SERVERLESS, "demo", "creating")
    assert r.kind == cache_ref.REPLICATION_GROUP and c.kind == cache_ref.CACHE_CLUSTER


def _serverless_snap(status: str) -> dict:
    return {
        "ServerlessCacheSnapshotName": "s1",
        "Status": status,
        "ARN": "arn:aws:elasticache:us-east-1:123456789012:serverlesscachesnapshot:s1",
        "ServerlessCacheConfiguration": {
            "ServerlessCacheName": "demo",
            "Engine": "valkey",
            "MajorEngineVersion": "8",
        },
    }


def _poll(stub, status: str) -> None:
    # the wait knows the snapshot is serverless: one Describe call per poll
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [_serverless_snap(status)]},
        {"ServerlessCacheSnapshotName": "s1"},
    )


def test_wait_creating_to_available_with_backoff():
    ec, stub = stubbed("elasticache")
    for status in ("creating", "creating", "available"):
        _poll(stub, status)
    clock, seen = Clock(), []
    start = ops.from_serverless_snapshot(_serverless_snap("creating"))
    with stub:
        done = ops.wait_snapshot(ec, start, 600, seen.append, clock.sleep, clock)
    assert done.status == "available"
    assert seen == ["creating", "creating", "creating", "available"]
    assert_backs_off(clock.sleeps, polls=3)


def test_wait_creating_to_failed_exits_5():
    ec, stub = stubbed("elasticache")
    _poll(stub, "creating")
    _poll(stub, "failed")
    clock = Clock()
    start = ops.from_serverless_snapshot(_serverless_snap("creating"))
    with stub, pytest.raises(AwsResourceError) as err:
        ops.wait_snapshot(ec, start, 600, sleep=clock.sleep, clock=clock)
    assert err.value.exit_code == 5 and "failed" in err.value.line()


def test_wait_gives_up_at_the_timeout():
    ec, stub = stubbed("elasticache")
    for _ in range(3):
        _poll(stub, "creating")
    clock = Clock()
    start = ops.from_serverless_snapshot(_serverless_snap("creating"))
    with stub, pytest.raises(AwsResourceError) as err:
        ops.wait_snapshot(ec, start, 5, sleep=clock.sleep, clock=clock)
    assert "still creating after 5 s" in err.value.line()
    assert sum(clock.sleeps) == 5


def test_restore_replication_group_copies_source_settings(moto_world):
    ec = client()
    group = aws.find_cache(Settings(cache="demo"), ec)
    snap = ops.create_snapshot(ec, group, "demo-snap")
    result = restore.restore_snapshot(ec, snap, "demo-restored")
    assert result.kind == cache_ref.REPLICATION_GROUP and result.copied_from == "demo"
    req = result.request
    assert req["SnapshotName"] == "demo-snap" and req["ReplicationGroupId"] == "demo-restored"
    assert req["CacheNodeType"] == "cache.t4g.small"
    assert req["TransitEncryptionEnabled"] is True
    assert req["CacheSubnetGroupName"] == "cache-subnets"  # recorded by the snapshot
    assert aws.find_cache(Settings(cache="demo-restored"), ec).kind == cache_ref.REPLICATION_GROUP
    # flags override what is copied
    opts = restore.RestoreOptions(
        node_type="cache.r7g.large", tls=False, security_group_ids=[moto_world.app_sg]
    )
    req = restore.restore_snapshot(ec, snap, "demo-2", opts).request
    assert req["CacheNodeType"] == "cache.r7g.large" and req["TransitEncryptionEnabled"] is False
    assert req["SecurityGroupIds"] == [moto_world.app_sg]


def test_restore_cache_cluster(moto_world):
    ec = client()
    single = aws.find_cache(Settings(cache="single"), ec)
    snap = ops.create_snapshot(ec, single, "single-snap")
    result = restore.restore_snapshot(ec, snap, "single-restored")
    assert result.kind == cache_ref.CACHE_CLUSTER
    assert result.request["CacheClusterId"] == "single-restored"
    assert result.request["EngineVersion"] == "7.0"
    assert aws.find_cache(Settings(cache="single-restored"), ec).kind == cache_ref.CACHE_CLUSTER


def test_restore_refuses_an_existing_target_before_creating_anything(moto_world):
    ec = client()
    snap = ops.create_snapshot(ec, aws.find_cache(Settings(cache="demo"), ec), "demo-snap")
    created = []
    ec.meta.events.register(
        "before-call.elasticache.CreateReplicationGroup", lambda **kw: created.append(1)
    )
    ec.meta.events.register(
        "before-call.elasticache.CreateCacheCluster", lambda **kw: created.append(1)
    )
    for existing in ("single", "demo-snap-target"):
        if existing == "demo-snap-target":
            restore.restore_snapshot(ec, snap, existing)
            created.clear()
        with pytest.raises(AwsResourceError) as err:
            restore.restore_snapshot(ec, snap, existing)
        assert err.value.exit_code == 5 and "already exists" in err.value.line()
        assert created == []


def test_restore_serverless_with_stubber_copies_network():
    ec, stub = stubbed("elasticache")
    snap = ops.from_serverless_snapshot(_serverless_snap("available"))
    # target free: not a serverless cache, replication group or cache cluster
    not_found(
        stub,
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        {"ServerlessCacheName": "demo-new"},
    )
    not_found(
        stub,
        "describe_replication_groups",
        "ReplicationGroupNotFoundFault",
        {"ReplicationGroupId": "demo-new"},
    )
    not_found(
        stub,
        "describe_cache_clusters",
        "CacheClusterNotFound",
        {"CacheClusterId": "demo-new", "ShowCacheNodeInfo": True},
    )
    source = serverless_desc("demo", ["sg-1", "sg-2"])
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [source]},
        {"ServerlessCacheName": "demo"},
    )
    expected = {
        "ServerlessCacheName": "demo-new",
        "Description": "restored from snapshot s1 by closeup-ops",
        "Engine": "valkey",
        "MajorEngineVersion": "8",
        "SnapshotArnsToRestore": [snap.arn],
        "SubnetIds": ["subnet-a", "subnet-b"],
        "SecurityGroupIds": ["sg-1", "sg-2"],
    }
    stub.add_response(
        "create_serverless_cache",
        {"ServerlessCache": {"ServerlessCacheName": "demo-new", "Status": "creating"}},
        expected,
    )
    with stub:
        result = restore.restore_snapshot(ec, snap, "demo-new")
    stub.assert_no_pending_responses()
    assert result.kind == cache_ref.SERVERLESS and result.status == "creating"


def test_serverless_list_and_delete_with_stubber():
    ec, stub = stubbed("elasticache")
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [_serverless_snap("available")]},
        {"ServerlessCacheName": "demo"},
    )
    stub.add_response(
        "delete_serverless_cache_snapshot",
        {"ServerlessCacheSnapshot": _serverless_snap("deleting")},
        {"ServerlessCacheSnapshotName": "s1"},
    )
    with stub:
        found = ops.list_snapshots(ec, cache_ref.serverless_ref(serverless_desc("demo")))
        gone = ops.delete_snapshot(ec, found[0])
    assert [s.kind for s in found] == [cache_ref.SERVERLESS] and gone.status == "deleting"


def test_list_shows_both_kinds_side_by_side(moto_world):
    """Node snapshots from moto; the serverless page (moto has no such API) from a fake
    method, since the two calls run in parallel and a Stubber needs a fixed order.
    (The serverless request/response shapes are checked by the Stubber tests above.)"""
    ec = client()
    ops.create_snapshot(ec, aws.find_cache(Settings(cache="demo"), ec), "n1")
    asked = []

    def serverless_page(**kw):
        asked.append(kw)
        if not kw:
            return {"ServerlessCacheSnapshots": [_serverless_snap("available")], "NextToken": "t"}
        return {"ServerlessCacheSnapshots": []}

    ec.describe_serverless_cache_snapshots = serverless_page
    found = ops.list_snapshots(ec)
    assert {(s.name, s.kind) for s in found} == {
        ("n1", cache_ref.REPLICATION_GROUP),
        ("s1", cache_ref.SERVERLESS),
    }
    assert asked == [{}, {"NextToken": "t"}]


def test_list_reports_an_error_from_either_side(moto_world):
    from botocore.exceptions import ClientError

    ec = client()

    def denied(**kw):
        raise ClientError({"Error": {"Code": "AccessDenied"}}, "DescribeServerlessCacheSnapshots")

    ec.describe_serverless_cache_snapshots = denied
    with pytest.raises(ClientError):
        ops.list_snapshots(ec)


def _cache_status(stub, status):
    desc = dict(serverless_desc("new"), Status=status)
    stub.add_response(
        "describe_serverless_caches", {"ServerlessCaches": [desc]}, {"ServerlessCacheName": "new"}
    )


def test_wait_for_the_restored_cache():
    ec, stub = stubbed("elasticache")
    for status in ("creating", "creating", "available"):
        _cache_status(stub, status)
    clock, seen = Clock(), []
    with stub:
        cache = restore.wait_cache(ec, "new", 600, seen.append, clock.sleep, clock)
    assert cache.status == "available" and seen == ["creating", "creating", "available"]
    assert_backs_off(clock.sleeps, polls=2)


def test_wait_for_a_restore_that_fails_exits_5():
    ec, stub = stubbed("elasticache")
    _cache_status(stub, "creating")
    _cache_status(stub, "create-failed")
    clock = Clock()
    with stub, pytest.raises(AwsResourceError) as err:
        restore.wait_cache(ec, "new", 600, sleep=clock.sleep, clock=clock)
    assert err.value.exit_code == 5 and "create-failed" in err.value.line()


def test_restore_request_copies_failover_rbac_and_warns_about_auth_token():
    source = cache_ref.replication_group_ref(
        {
            "ReplicationGroupId": "rg",
            "MemberClusters": ["rg-001", "rg-002"],
            "AutomaticFailover": "enabled",
            "MultiAZ": "enabled",
            "UserGroupIds": ["ug-app"],
            "AuthTokenEnabled": True,
            "TransitEncryptionEnabled": True,
            "CacheNodeType": "cache.r7g.large",
            "ClusterEnabled": False,
        },
        {},
    )
    snap = ops.from_node_snapshot(
        {"SnapshotName": "s", "ReplicationGroupId": "rg", "CacheSubnetGroupName": "subnets"}
    )
    req = restore.restore_request(snap, "rg-copy", source, restore.RestoreOptions())
    assert req["NumCacheClusters"] == 2 and req["AutomaticFailoverEnabled"] is True
    assert req["MultiAZEnabled"] is True and req["UserGroupIds"] == ["ug-app"]
    assert req["CacheSubnetGroupName"] == "subnets" and req["CacheNodeType"] == "cache.r7g.large"
    assert "AUTH token" in restore.restore_warnings(snap, source)[0]
    gone = restore.restore_warnings(snap, None)
    assert len(gone) == 1 and "is gone" in gone[0] and "security groups" in gone[0]


def assert_backs_off(sleeps: list[float], polls: int) -> None:
    """A backoff, whatever its constants: one wait between polls, each at least a second
    (AWS's Describe* calls are throttled), never shorter than the one before, growing, and
    never past 30 s (a wait reports progress at least that often)."""
    assert len(sleeps) == polls
    assert all(1 <= s <= 30 for s in sleeps), sleeps
    assert sorted(sleeps) == sleeps and sleeps[-1] > sleeps[0], sleeps
