"""`snapshot restore` requests as real ElastiCache would need them, pinned with Stubber.

Each expected request is written from the fixture (the source cache or the snapshot below)
and the rules in botocore's service model (elasticache CreateReplicationGroup /
CreateCacheCluster / CreateServerlessCache documentation), never read back from the code:
- AutomaticFailoverEnabled "must be enabled for ... (cluster mode enabled) replication groups"
- CacheParameterGroupName: "If this argument is omitted, the default cache parameter group
  for the specified engine is used" (non-cluster: a multi-shard restore fails)
- NumCacheClusters "is not used if there is more than one node group (shard). You should use
  ReplicasPerNodeGroup instead"; with AutomaticFailoverEnabled "must be at least 2"
- DataTieringEnabled "must be set to true when using r6gd nodes"
- Port: "The port number on which each member of the replication group accepts connections"
- AtRestEncryptionEnabled "You cannot modify ... after the replication group is created"
"""

from __future__ import annotations

import pytest
from botocore.stub import ANY
from helpers.aws import Clock, not_found, source_found, source_gone, stubbed

from closeup_ops.errors import AwsResourceError
from closeup_ops.ops.aws import restore
from closeup_ops.ops.aws import snapshots as ops

KMS = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-22bb-33cc-44dd-555555eeeeee"


def _created(stub, expected: dict) -> None:
    stub.add_response(
        "create_replication_group",
        {
            "ReplicationGroup": {
                "ReplicationGroupId": expected["ReplicationGroupId"],
                "Status": "creating",
            }
        },
        expected,
    )


# --- cluster mode enabled -----------------------------------------------------------------

CLUSTER_SNAPSHOT = {
    "SnapshotName": "orders-snap",
    "ReplicationGroupId": "orders",
    "SnapshotStatus": "available",
    "CacheNodeType": "cache.r6gd.xlarge",
    "Engine": "valkey",
    "EngineVersion": "8.0.1",
    "CacheParameterGroupName": "default.valkey8.cluster.on",
    "CacheSubnetGroupName": "subnets-a",
    "Port": 6390,
    "NumNodeGroups": 3,
    "AutomaticFailover": "enabled",
    "DataTiering": "enabled",
    "KmsKeyId": KMS,
    "NodeSnapshots": [
        {
            "NodeGroupId": f"000{i}",
            "CacheNodeId": "0001",
            "NodeGroupConfiguration": {"NodeGroupId": f"000{i}", "ReplicaCount": 2},
        }
        for i in (1, 2, 3)
    ],
}


def test_cluster_mode_restore_from_the_snapshot_when_the_source_is_gone():
    ec, stub = stubbed("elasticache")
    snap = ops.from_node_snapshot(CLUSTER_SNAPSHOT)
    source_gone(stub, "orders")
    s = CLUSTER_SNAPSHOT
    _created(
        stub,
        {
            "ReplicationGroupId": "orders-copy",
            "ReplicationGroupDescription": ANY,
            "SnapshotName": s["SnapshotName"],
            "CacheNodeType": s["CacheNodeType"],
            "Engine": s["Engine"],
            "EngineVersion": s["EngineVersion"],
            "CacheParameterGroupName": s["CacheParameterGroupName"],
            "CacheSubnetGroupName": s["CacheSubnetGroupName"],
            "Port": s["Port"],
            "NumNodeGroups": s["NumNodeGroups"],
            "ReplicasPerNodeGroup": 2,  # every node group's ReplicaCount
            "AutomaticFailoverEnabled": True,  # required with cluster mode
            "DataTieringEnabled": True,  # r6gd
            "AtRestEncryptionEnabled": True,  # the snapshot names a KMS key
            "KmsKeyId": s["KmsKeyId"],
        },
    )
    with stub:
        result = restore.restore_snapshot(ec, snap, "orders-copy", check_target=False)
    stub.assert_no_pending_responses()
    assert result.copied_from is None
    # what the snapshot cannot say is said once
    assert len(result.warnings) == 1
    assert "security groups" in result.warnings[0] and "AUTH token" in result.warnings[0]


def _cluster_source() -> tuple[dict, list[dict]]:
    group = {
        "ReplicationGroupId": "orders",
        "Status": "available",
        "ClusterEnabled": True,
        "AutomaticFailover": "enabled",
        "MultiAZ": "enabled",
        "DataTiering": "disabled",
        "AtRestEncryptionEnabled": True,
        "KmsKeyId": KMS,
        "TransitEncryptionEnabled": True,
        "AuthTokenEnabled": False,
        "UserGroupIds": ["ug-app"],
        "CacheNodeType": "cache.r7g.large",
        "ConfigurationEndpoint": {
            "Address": "clustercfg.orders.abc123.use1.cache.amazonaws.com",
            "Port": 7000,
        },
        "MemberClusters": [f"orders-000{g}-00{n}" for g in (1, 2) for n in (1, 2)],
        "NodeGroups": [
            {
                "NodeGroupId": f"000{g}",
                "NodeGroupMembers": [
                    {"CacheClusterId": f"orders-000{g}-00{n}", "CacheNodeId": "0001"}
                    for n in (1, 2)
                ],
            }
            for g in (1, 2)
        ],
    }
    members = [
        {
            "CacheClusterId": m,
            "ReplicationGroupId": "orders",
            "Engine": "valkey",
            "EngineVersion": "8.0.1",
            "CacheNodeType": "cache.r7g.large",
            "CacheParameterGroup": {"CacheParameterGroupName": "orders-params-cluster"},
            "CacheSubnetGroupName": "subnets-b",
            "SecurityGroups": [{"SecurityGroupId": "sg-0orders", "Status": "active"}],
        }
        for m in group["MemberClusters"]
    ]
    return group, members


def test_cluster_mode_restore_copies_the_existing_source():
    ec, stub = stubbed("elasticache")
    # an old snapshot: taken before the source moved to valkey 8 and port 7000
    snap = ops.from_node_snapshot(
        dict(CLUSTER_SNAPSHOT, Engine="redis", EngineVersion="7.1.0", Port=6379, NumNodeGroups=2)
    )
    group, members = _cluster_source()
    source_found(stub, group, members)
    _created(
        stub,
        {
            "ReplicationGroupId": "orders-copy",
            "ReplicationGroupDescription": ANY,
            "SnapshotName": "orders-snap",
            "CacheNodeType": group["CacheNodeType"],
            "Engine": "valkey",  # engine and version of the same cache: the source's
            "EngineVersion": "8.0.1",
            "CacheParameterGroupName": "orders-params-cluster",
            "CacheSubnetGroupName": "subnets-b",
            "SecurityGroupIds": ["sg-0orders"],
            "Port": 7000,  # the copied security group allows this port
            "TransitEncryptionEnabled": True,
            "NumNodeGroups": 2,
            "ReplicasPerNodeGroup": 1,  # two members per node group
            "AutomaticFailoverEnabled": True,
            "MultiAZEnabled": True,  # with replicas
            "AtRestEncryptionEnabled": True,
            "KmsKeyId": KMS,
            "UserGroupIds": ["ug-app"],
        },
    )
    with stub:
        result = restore.restore_snapshot(ec, snap, "orders-copy", check_target=False)
    stub.assert_no_pending_responses()
    assert result.copied_from == "orders" and result.warnings == []


def test_single_node_group_without_replicas_gets_no_multi_az_or_failover():
    ec, stub = stubbed("elasticache")
    snap = ops.from_node_snapshot(
        {
            "SnapshotName": "solo-snap",
            "ReplicationGroupId": "solo",
            "CacheNodeType": "cache.t4g.small",
            "Engine": "redis",
            "EngineVersion": "7.1.0",
            "CacheParameterGroupName": "default.redis7",
            "Port": 6379,
            "NumNodeGroups": 1,
            "AutomaticFailover": "disabled",
            "NodeSnapshots": [
                {"NodeGroupId": "0001", "NodeGroupConfiguration": {"ReplicaCount": 0}}
            ],
        }
    )
    group = {
        "ReplicationGroupId": "solo",
        "Status": "available",
        "ClusterEnabled": False,
        "AutomaticFailover": "disabled",
        "MultiAZ": "enabled",  # as an API stand-in may report it: meaningless without replicas
        "AtRestEncryptionEnabled": False,
        "MemberClusters": ["solo-001"],
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "PrimaryEndpoint": {
                    "Address": "solo.abc.ng.0001.use1.cache.amazonaws.com",
                    "Port": 6379,
                },
                "NodeGroupMembers": [{"CacheClusterId": "solo-001", "CurrentRole": "primary"}],
            }
        ],
    }
    member = {
        "CacheClusterId": "solo-001",
        "ReplicationGroupId": "solo",
        "Engine": "redis",
        "EngineVersion": "7.1.0",
        "CacheParameterGroup": {"CacheParameterGroupName": "default.redis7"},
    }
    source_found(stub, group, [member])
    _created(
        stub,
        {
            "ReplicationGroupId": "solo-copy",
            "ReplicationGroupDescription": ANY,
            "SnapshotName": "solo-snap",
            "CacheNodeType": "cache.t4g.small",
            "Engine": "redis",
            "EngineVersion": "7.1.0",
            "CacheParameterGroupName": "default.redis7",
            "Port": 6379,
            "NumCacheClusters": 1,
            "AtRestEncryptionEnabled": False,  # as the source: it cannot be changed later
        },
    )
    with stub:
        restore.restore_snapshot(ec, snap, "solo-copy", check_target=False)
    stub.assert_no_pending_responses()


def test_cache_cluster_restore_keeps_port_and_parameter_group_of_the_snapshot():
    ec, stub = stubbed("elasticache")
    snap = ops.from_node_snapshot(
        {
            "SnapshotName": "single-snap",
            "CacheClusterId": "single",
            "CacheNodeType": "cache.t4g.micro",
            "Engine": "redis",
            "EngineVersion": "7.0.7",
            "CacheParameterGroupName": "single-params",
            "CacheSubnetGroupName": "subnets-a",
            "Port": 6400,
        }
    )
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
            "EngineVersion": "7.0.7",
            "CacheParameterGroupName": "single-params",
            "CacheSubnetGroupName": "subnets-a",
            "Port": 6400,
        },
    )
    with stub:
        restore.restore_snapshot(ec, snap, "single-copy", check_target=False)
    stub.assert_no_pending_responses()


def test_serverless_restore_copies_limits_key_and_backups_of_the_source():
    ec, stub = stubbed("elasticache")
    snap = ops.from_serverless_snapshot(
        {
            "ServerlessCacheSnapshotName": "sess-snap",
            "ARN": "arn:aws:elasticache:us-east-1:123456789012:serverlesscachesnapshot:sess-snap",
            "Status": "available",
            "ServerlessCacheConfiguration": {
                "ServerlessCacheName": "sess",
                "Engine": "redis",
                "MajorEngineVersion": "7",
            },
        }
    )
    source = {
        "ServerlessCacheName": "sess",
        "Status": "available",
        "Engine": "valkey",  # upgraded since the snapshot
        "MajorEngineVersion": "8",
        "CacheUsageLimits": {
            "DataStorage": {"Maximum": 10, "Unit": "GB"},
            "ECPUPerSecond": {"Maximum": 50000},
        },
        "KmsKeyId": KMS,
        "SnapshotRetentionLimit": 14,
        "DailySnapshotTime": "03:30",
        "SecurityGroupIds": ["sg-0sess"],
        "SubnetIds": ["subnet-a", "subnet-b"],
        "UserGroupId": "ug-sess",
    }
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [source]},
        {"ServerlessCacheName": "sess"},
    )
    stub.add_response(
        "create_serverless_cache",
        {"ServerlessCache": {"ServerlessCacheName": "sess-copy", "Status": "creating"}},
        {
            "ServerlessCacheName": "sess-copy",
            "Description": ANY,
            "Engine": "valkey",
            "MajorEngineVersion": "8",
            "SnapshotArnsToRestore": [snap.arn],
            "SubnetIds": source["SubnetIds"],
            "SecurityGroupIds": source["SecurityGroupIds"],
            "UserGroupId": source["UserGroupId"],
            "CacheUsageLimits": source["CacheUsageLimits"],
            "KmsKeyId": KMS,
            "SnapshotRetentionLimit": 14,
            "DailySnapshotTime": "03:30",
        },
    )
    with stub:
        restore.restore_snapshot(ec, snap, "sess-copy", check_target=False)
    stub.assert_no_pending_responses()


# --- waits end on every terminal state -----------------------------------------------------


def test_a_member_that_failed_to_restore_ends_the_wait_at_the_first_poll():
    ec, stub = stubbed("elasticache")
    group, members = _cluster_source()
    group = dict(group, ReplicationGroupId="orders-copy", Status="creating")
    members = [dict(m, CacheClusterStatus="creating") for m in members]
    members[1]["CacheClusterStatus"] = "restore-failed"
    source_found(stub, group, members)
    clock = Clock()
    with stub, pytest.raises(AwsResourceError) as err:
        restore.wait_cache(ec, "orders-copy", 3600, sleep=clock.sleep, clock=clock)
    assert err.value.exit_code == 5 and "restore-failed" in err.value.line()
    assert clock.sleeps == []  # one poll, not the timeout


@pytest.mark.parametrize("status", ["incompatible-network", "restore-failed", "deleting"])
def test_a_cache_cluster_in_a_terminal_state_ends_the_wait(status):
    ec, stub = stubbed("elasticache")
    not_found(
        stub,
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        {"ServerlessCacheName": "c1"},
    )
    not_found(
        stub,
        "describe_replication_groups",
        "ReplicationGroupNotFoundFault",
        {"ReplicationGroupId": "c1"},
    )
    stub.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [{"CacheClusterId": "c1", "CacheClusterStatus": status}]},
        {"CacheClusterId": "c1", "ShowCacheNodeInfo": True},
    )
    clock = Clock()
    with stub, pytest.raises(AwsResourceError) as err:
        restore.wait_cache(ec, "c1", 3600, sleep=clock.sleep, clock=clock)
    assert status in err.value.line() and clock.sleeps == []


def test_a_cache_that_vanishes_is_not_creating_forever():
    ec, stub = stubbed("elasticache")
    for _ in range(2):
        source_gone(stub, "gone")
    clock = Clock()
    with stub, pytest.raises(AwsResourceError) as err:
        restore.wait_cache(ec, "gone", 3600, sleep=clock.sleep, clock=clock)
    assert "gone" in err.value.line() and len(clock.sleeps) == 1


@pytest.mark.parametrize("deleted", [True, False])
def test_a_snapshot_deleted_while_waiting_ends_the_wait(deleted):
    ec, stub = stubbed("elasticache")
    if deleted:
        not_found(stub, "describe_snapshots", "SnapshotNotFoundFault", {"SnapshotName": "s1"})
        not_found(
            stub,
            "describe_serverless_cache_snapshots",
            "ServerlessCacheSnapshotNotFoundFault",
            {"ServerlessCacheSnapshotName": "s1"},
        )
    else:
        stub.add_response(
            "describe_snapshots",
            {"Snapshots": [dict(CLUSTER_SNAPSHOT, SnapshotName="s1", SnapshotStatus="deleting")]},
            {"SnapshotName": "s1"},
        )
    start = ops.from_node_snapshot(
        dict(CLUSTER_SNAPSHOT, SnapshotName="s1", SnapshotStatus="creating")
    )
    clock = Clock()
    with stub, pytest.raises(AwsResourceError) as err:
        ops.wait_snapshot(ec, start, 3600, sleep=clock.sleep, clock=clock)
    assert ("deleted" if deleted else "deleting") in err.value.line()
    assert len(clock.sleeps) == 1
