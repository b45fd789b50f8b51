"""A node-based restore copies the source's backups, maintenance, network type and TLS mode
(restore_settings.py), each request pinned with Stubber, which checks it against the real
API model (a parameter CreateCacheCluster does not have fails the call before it is sent).

Expected requests are written from each fixture and from the service model's documentation
(botocore elasticache CreateReplicationGroup / CreateCacheCluster / Snapshot):
- SnapshotRetentionLimit "Default: 0 (i.e., automatic backups are disabled ...)", so an
  uncopied limit turns the copy's backups off
- Snapshot.SnapshotRetentionLimit "For manual snapshots, this field reflects the
  SnapshotRetentionLimit for the source cluster when the snapshot was created"
- NetworkType "ipv4 | ipv6 | dual_stack"; IpDiscovery "ipv4 | ipv6" (both operations)
- TransitEncryptionMode: "When setting TransitEncryptionEnabled to true, you can set your
  TransitEncryptionMode to preferred in the same request" (CreateReplicationGroup only)
- ClusterMode "Enabled or Disabled"; "compatible" is the step of a migration (ModifyRG)
- a replication group's description has no PreferredMaintenanceWindow: its members do
"""

from __future__ import annotations

import boto3
from botocore.stub import ANY
from helpers import aws as aws_helpers
from helpers.aws import cluster_found, source_found, source_gone, stubbed

from closeup_ops.connect import aws, cache_ref
from closeup_ops.ops.aws import restore
from closeup_ops.ops.aws import snapshots as ops
from closeup_ops.settings import Settings

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world

WINDOW = "sun:23:00-mon:00:30"


def _group(**changes) -> tuple[dict, list[dict]]:
    """A cluster-mode-disabled valkey group, primary and one replica, on a dual-stack
    network with backups, a maintenance window and TLS still in the 'preferred' step."""
    group = {
        "ReplicationGroupId": "sessions",
        "Status": "available",
        "ClusterEnabled": False,
        "ClusterMode": "disabled",
        "AutomaticFailover": "enabled",
        "MultiAZ": "enabled",
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "preferred",
        "SnapshotRetentionLimit": 7,
        "SnapshotWindow": "03:00-04:00",
        "AutoMinorVersionUpgrade": False,
        "NetworkType": "dual_stack",
        "IpDiscovery": "ipv6",
        "Durability": "async",
        "CacheNodeType": "cache.r7g.large",
        "MemberClusters": ["sessions-001", "sessions-002"],
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "PrimaryEndpoint": {
                    "Address": "master.sessions.abc.use1.cache.amazonaws.com",
                    "Port": 6379,
                },
                "NodeGroupMembers": [
                    {"CacheClusterId": "sessions-001", "CurrentRole": "primary"},
                    {"CacheClusterId": "sessions-002", "CurrentRole": "replica"},
                ],
            }
        ],
        **changes,
    }
    members = [
        {
            "CacheClusterId": m,
            "ReplicationGroupId": "sessions",
            "Engine": "valkey",
            "EngineVersion": "9.0.0",
            "CacheParameterGroup": {"CacheParameterGroupName": "default.valkey9"},
            "CacheSubnetGroupName": "subnets-v6",
            "SecurityGroups": [{"SecurityGroupId": "sg-0sessions", "Status": "active"}],
            "PreferredMaintenanceWindow": WINDOW,
        }
        for m in group["MemberClusters"]
    ]
    return group, members


# an older snapshot: the source has changed its backups and window since
SESSIONS_SNAPSHOT = {
    "SnapshotName": "sessions-snap",
    "ReplicationGroupId": "sessions",
    "SnapshotStatus": "available",
    "SnapshotRetentionLimit": 1,
    "SnapshotWindow": "09:00-10:00",
    "PreferredMaintenanceWindow": "wed:01:00-wed:02:00",
}


def test_group_restore_copies_backups_network_and_tls_mode_of_the_source():
    ec, stub = stubbed("elasticache")
    group, members = _group()
    source_found(stub, group, members)
    stub.add_response(
        "create_replication_group",
        {"ReplicationGroup": {"ReplicationGroupId": "sessions-copy", "Status": "creating"}},
        {
            "ReplicationGroupId": "sessions-copy",
            "ReplicationGroupDescription": ANY,
            "SnapshotName": "sessions-snap",
            "CacheNodeType": "cache.r7g.large",
            "Engine": "valkey",
            "EngineVersion": "9.0.0",
            "CacheParameterGroupName": "default.valkey9",
            "CacheSubnetGroupName": "subnets-v6",
            "SecurityGroupIds": ["sg-0sessions"],
            "Port": 6379,
            "TransitEncryptionEnabled": True,
            "NumCacheClusters": 2,
            "AutomaticFailoverEnabled": True,
            "MultiAZEnabled": True,
            "AtRestEncryptionEnabled": True,
            # the source as it is now, not as the snapshot recorded it
            "SnapshotRetentionLimit": 7,
            "SnapshotWindow": "03:00-04:00",
            "PreferredMaintenanceWindow": WINDOW,  # from the member clusters
            "AutoMinorVersionUpgrade": False,
            "NetworkType": "dual_stack",
            "IpDiscovery": "ipv6",
            "TransitEncryptionMode": "preferred",  # plain-text clients keep working
            "ClusterMode": "disabled",
            "Durability": "async",
        },
    )
    snap = ops.from_node_snapshot(SESSIONS_SNAPSHOT)
    with stub:
        result = restore.restore_snapshot(ec, snap, "sessions-copy", check_target=False)
    stub.assert_no_pending_responses()
    assert result.warnings == []  # nothing left behind


def _single(**changes) -> dict:
    return {
        "CacheClusterId": "single",
        "CacheClusterStatus": "available",
        "Engine": "valkey",
        "EngineVersion": "8.0.1",
        "CacheNodeType": "cache.t4g.micro",
        "CacheParameterGroup": {"CacheParameterGroupName": "default.valkey8"},
        "CacheSubnetGroupName": "subnets-v6",
        "SecurityGroups": [{"SecurityGroupId": "sg-0single", "Status": "active"}],
        "CacheNodes": [
            {
                "CacheNodeId": "0001",
                "Endpoint": {"Address": "single.abc.0001.use1.cache.amazonaws.com", "Port": 6380},
            }
        ],
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "preferred",
        "SnapshotRetentionLimit": 3,
        "SnapshotWindow": "02:00-03:00",
        "PreferredMaintenanceWindow": "mon:05:00-mon:06:00",
        "AutoMinorVersionUpgrade": True,
        "NetworkType": "ipv6",
        "IpDiscovery": "ipv6",
        **changes,
    }


def test_cache_cluster_restore_copies_what_create_cache_cluster_accepts():
    ec, stub = stubbed("elasticache")
    single = _single(NotificationConfiguration={"TopicArn": "arn:aws:sns:us-east-1:1:ops"})
    cluster_found(stub, single)
    stub.add_response(
        "create_cache_cluster",
        {"CacheCluster": {"CacheClusterId": "single-copy", "CacheClusterStatus": "creating"}},
        {
            "CacheClusterId": "single-copy",
            "NumCacheNodes": 1,
            "SnapshotName": "single-snap",
            "CacheNodeType": "cache.t4g.micro",
            "Engine": "valkey",
            "EngineVersion": "8.0.1",
            "CacheParameterGroupName": "default.valkey8",
            "CacheSubnetGroupName": "subnets-v6",
            "SecurityGroupIds": ["sg-0single"],
            "Port": 6380,
            "TransitEncryptionEnabled": True,
            "SnapshotRetentionLimit": 3,
            "SnapshotWindow": "02:00-03:00",
            "PreferredMaintenanceWindow": "mon:05:00-mon:06:00",
            "AutoMinorVersionUpgrade": True,
            "NetworkType": "ipv6",
            "IpDiscovery": "ipv6",
            # no TransitEncryptionMode: CreateCacheCluster has none
        },
    )
    snap = ops.from_node_snapshot({"SnapshotName": "single-snap", "CacheClusterId": "single"})
    with stub:
        result = restore.restore_snapshot(ec, snap, "single-copy", check_target=False)
    stub.assert_no_pending_responses()
    # what could not be copied is said, once each
    assert len(result.warnings) == 2, result.warnings
    mode, notes = result.warnings
    assert "preferred" in mode and "TLS" in mode
    assert "SNS notifications" in notes and "log delivery" not in notes


def test_a_gone_source_still_gets_the_backups_its_snapshot_recorded():
    ec, stub = stubbed("elasticache")
    source_gone(stub, "single")
    stub.add_response(
        "create_cache_cluster",
        {"CacheCluster": {"CacheClusterId": "single-copy", "CacheClusterStatus": "creating"}},
        {
            "CacheClusterId": "single-copy",
            "NumCacheNodes": 1,
            "SnapshotName": "single-snap",
            "CacheNodeType": "cache.t4g.micro",
            "Engine": "redis",
            "EngineVersion": "7.1.0",
            "Port": 6379,
            "SnapshotRetentionLimit": 5,
            "SnapshotWindow": "02:00-03:00",
            "PreferredMaintenanceWindow": "mon:05:00-mon:06:00",
            "AutoMinorVersionUpgrade": False,
        },
    )
    snap = ops.from_node_snapshot(
        {
            "SnapshotName": "single-snap",
            "CacheClusterId": "single",
            "CacheNodeType": "cache.t4g.micro",
            "Engine": "redis",
            "EngineVersion": "7.1.0",
            "Port": 6379,
            "SnapshotRetentionLimit": 5,
            "SnapshotWindow": "02:00-03:00",
            "PreferredMaintenanceWindow": "mon:05:00-mon:06:00",
            "AutoMinorVersionUpgrade": False,
        }
    )
    with stub:
        result = restore.restore_snapshot(ec, snap, "single-copy", check_target=False)
    stub.assert_no_pending_responses()
    # a snapshot does not record the network type: said with the rest
    assert len(result.warnings) == 1 and "network type" in result.warnings[0]


def _request(group: dict, members: list[dict], opts=None) -> tuple[dict, list[str]]:
    source = cache_ref.replication_group_ref(group, {m["CacheClusterId"]: m for m in members})
    snap = ops.from_node_snapshot(SESSIONS_SNAPSHOT)
    opts = opts or restore.RestoreOptions()
    req = restore.restore_request(snap, "sessions-copy", source, opts)
    return req, restore.restore_warnings(snap, source, opts)


def test_a_tls_flag_wins_over_the_sources_migration_state():
    group, members = _group()
    for tls in (True, False):
        req, _ = _request(group, members, restore.RestoreOptions(tls=tls))
        assert req["TransitEncryptionEnabled"] is tls
        assert "TransitEncryptionMode" not in req
    # encrypted-only ("required") is what TLS at creation gives: only 'preferred' is said
    req, _ = _request(*_group(TransitEncryptionMode="required"))
    assert req["TransitEncryptionEnabled"] is True and "TransitEncryptionMode" not in req


def test_a_group_migrating_to_cluster_mode_is_not_created_in_compatible_mode():
    group, members = _group(ClusterMode="compatible", Durability="default")
    req, warnings = _request(group, members)
    assert "ClusterMode" not in req and "Durability" not in req
    assert req["NumCacheClusters"] == 2  # the topology it has now
    assert len(warnings) == 1 and "compatible" in warnings[0]


def test_log_delivery_is_named_not_copied():
    logs = [
        {
            "LogType": "slow-log",
            "DestinationType": "cloudwatch-logs",
            "DestinationDetails": {"CloudWatchLogsDetails": {"LogGroup": "prod-slow"}},
            "LogFormat": "json",
            "Status": "active",
        }
    ]
    req, warnings = _request(*_group(LogDeliveryConfigurations=logs))
    assert "LogDeliveryConfigurations" not in req
    assert len(warnings) == 1 and "log delivery" in warnings[0]


# --- end to end in moto: the new cache as AWS then describes it ----------------------------

COPIED = ("SnapshotRetentionLimit", "SnapshotWindow", "AutoMinorVersionUpgrade")
NETWORK = ("NetworkType", "IpDiscovery")


def test_the_restored_group_is_described_with_the_sources_settings(moto_world):
    ec = boto3.client("elasticache", region_name="us-east-1")
    ec.create_replication_group(
        ReplicationGroupId="v6",
        ReplicationGroupDescription="dual-stack cache",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t4g.small",
        NumCacheClusters=1,
        CacheSubnetGroupName="cache-subnets",
        NetworkType="dual_stack",
        IpDiscovery="ipv6",
        SnapshotRetentionLimit=7,
        SnapshotWindow="03:00-04:00",
        AutoMinorVersionUpgrade=False,
        TransitEncryptionEnabled=True,
        TransitEncryptionMode="preferred",
    )
    snap = ops.create_snapshot(ec, aws.find_cache(Settings(cache="v6"), ec), "v6-snap")
    restore.restore_snapshot(ec, snap, "v6-copy")
    (source, copy) = (
        ec.describe_replication_groups(ReplicationGroupId=n)["ReplicationGroups"][0]
        for n in ("v6", "v6-copy")
    )
    for key in (*COPIED, *NETWORK, "TransitEncryptionMode"):
        assert copy.get(key) == source[key], key


def test_the_restored_cache_cluster_is_described_with_the_sources_settings(moto_world):
    ec = boto3.client("elasticache", region_name="us-east-1")
    ec.create_cache_cluster(
        CacheClusterId="c6",
        Engine="redis",
        CacheNodeType="cache.t4g.micro",
        NumCacheNodes=1,
        CacheSubnetGroupName="cache-subnets",
        NetworkType="ipv6",
        IpDiscovery="ipv6",
        SnapshotRetentionLimit=5,
        SnapshotWindow="02:00-03:00",
        PreferredMaintenanceWindow="mon:05:00-mon:06:00",
        AutoMinorVersionUpgrade=False,
    )
    snap = ops.create_snapshot(ec, aws.find_cache(Settings(cache="c6"), ec), "c6-snap")
    restore.restore_snapshot(ec, snap, "c6-copy")
    (source, copy) = (
        ec.describe_cache_clusters(CacheClusterId=n)["CacheClusters"][0] for n in ("c6", "c6-copy")
    )
    for key in (*COPIED, *NETWORK, "PreferredMaintenanceWindow"):
        assert copy.get(key) == source[key], key
