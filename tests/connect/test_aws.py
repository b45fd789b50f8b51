"""Finding the cache: by name or endpoint, every kind; region from the endpoint code; errors."""

from __future__ import annotations

import os

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import not_found, serverless_desc, stubbed

from closeup_ops.connect import aws, cache_ref
from closeup_ops.endpoint import REGION_CODES
from closeup_ops.errors import AwsResourceError, UsageError, classify
from closeup_ops.settings import Settings

# pytest fixtures shared with the other AWS tests
aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def client():
    return boto3.client("elasticache", region_name="us-east-1")


def test_find_replication_group_by_name(moto_world):
    ref = aws.find_cache(Settings(cache="demo"), client())
    assert ref.kind == cache_ref.REPLICATION_GROUP and ref.name == "demo"
    assert ref.tls is True and ref.node_type == "cache.t4g.small"
    roles = {e["role"] for e in ref.endpoints}
    assert "primary" in roles and any(r.startswith("node") for r in roles)
    assert ref.ports == [6379]


def test_find_cache_cluster_by_name(moto_world):
    ref = aws.find_cache(Settings(cache="single"), client())
    assert ref.kind == cache_ref.CACHE_CLUSTER and ref.engine == "redis"


@pytest.mark.parametrize("pick", ["primary", "node"])
def test_find_by_endpoint_address(moto_world, pick):
    group = moto_world.group["NodeGroups"][0]
    host = (
        group["PrimaryEndpoint"]["Address"]
        if pick == "primary"
        else group["NodeGroupMembers"][0]["ReadEndpoint"]["Address"]
    )
    ref = aws.find_cache(Settings(host=host.upper() + "."), client())
    assert ref.name == "demo"


def test_find_by_tls_server_name_through_a_tunnel(moto_world):
    host = moto_world.group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    ref = aws.find_cache(Settings(host="127.0.0.1", tls_server_name=host), client())
    assert ref.name == "demo"


def test_not_found_lists_the_caches(moto_world):
    with pytest.raises(AwsResourceError) as err:
        aws.find_cache(Settings(cache="nope"), client())
    line = err.value.line()
    assert err.value.exit_code == 5
    assert "'nope' not found" in line and "demo (replication-group)" in line
    assert "single (cache-cluster)" in line
    with pytest.raises(AwsResourceError) as err:
        aws.find_cache(Settings(host="other.abc.use1.cache.amazonaws.com"), client())
    assert "no cache has the endpoint" in err.value.line() and "demo" in err.value.line()


def test_serverless_found_by_endpoint_and_reader_with_stubber():
    ec, stub = stubbed("elasticache", "ap-south-1")
    desc = serverless_desc("demo", ["sg-0cache"])
    stub.add_response("describe_serverless_caches", {"ServerlessCaches": [desc]}, {})
    stub.add_response("describe_cache_clusters", {"CacheClusters": []}, {"ShowCacheNodeInfo": True})
    stub.add_response("describe_replication_groups", {"ReplicationGroups": []}, {})
    with stub:
        ref = aws.find_cache(Settings(host=desc["Endpoint"]["Address"], port=6380), ec)
    stub.assert_no_pending_responses()
    assert ref.kind == cache_ref.SERVERLESS and ref.tls is True and ref.cluster_mode is True
    assert ref.ports == [6379, 6380]
    assert ref.security_group_ids == ["sg-0cache"]
    assert {e["role"] for e in ref.endpoints} == {"endpoint", "reader"}


def test_serverless_by_name_and_replication_group_member_groups_with_stubber():
    ec, stub = stubbed("elasticache")
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [serverless_desc("s")]},
        {"ServerlessCacheName": "s"},
    )
    with stub:
        assert aws.find_cache(Settings(cache="s"), ec).kind == cache_ref.SERVERLESS
    # a replication group's security groups are its member clusters' groups
    ec, stub = stubbed("elasticache")
    not_found(
        stub,
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        {"ServerlessCacheName": "rg"},
    )
    group = {
        "ReplicationGroupId": "rg",
        "MemberClusters": ["rg-001", "rg-002"],
        "Status": "available",
        "ClusterEnabled": False,
    }
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [group]}, {"ReplicationGroupId": "rg"}
    )
    members = [
        {
            "CacheClusterId": member,
            "ReplicationGroupId": "rg",
            "EngineVersion": "7.1.0",
            "Engine": "redis",
            "CacheSubnetGroupName": "subnets",
            "SecurityGroups": [{"SecurityGroupId": g, "Status": "active"} for g in sgs],
        }
        for member, sgs in (("rg-001", ["sg-a"]), ("rg-002", ["sg-a", "sg-b"]))
    ]
    other = {"CacheClusterId": "unrelated", "SecurityGroups": [{"SecurityGroupId": "sg-z"}]}
    # one paginated call for all members, not one per member
    stub.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [members[0], other], "Marker": "m2"},
        {"ShowCacheNodeInfo": True},
    )
    stub.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [members[1]]},
        {"ShowCacheNodeInfo": True, "Marker": "m2"},
    )
    with stub:
        ref = aws.find_cache(Settings(cache="RG"), ec)  # AWS stores ids lower-case
    stub.assert_no_pending_responses()
    assert ref.security_group_ids == ["sg-a", "sg-b"]
    assert ref.engine_version == "7.1.0" and ref.subnet_group == "subnets"


def test_region_from_the_endpoint_code(aws_env, monkeypatch, tmp_path):
    # --region > the endpoint's own region > AWS_REGION > AWS_DEFAULT_REGION > the profile
    config = tmp_path / "config"
    config.write_text("[default]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    settings = Settings(host="demo-du95w6.serverless.aps1.cache.amazonaws.com")
    assert aws.resolve_region(settings) == "ap-south-1"  # not the profile's sa-east-1
    assert aws.resolve_region(settings.with_(region="eu-west-1")) == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert aws.resolve_region(settings) == "ap-south-1"  # nor the environment's
    tunnelled = Settings(host="127.0.0.1", tls_server_name=settings.host)
    assert aws.resolve_region(tunnelled) == "ap-south-1"
    assert aws.resolve_region(Settings(host="localhost")) == "us-west-2"
    monkeypatch.delenv("AWS_REGION")
    assert aws.resolve_region(Settings(host="localhost")) == "us-east-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert aws.resolve_region(Settings(host="localhost")) == "sa-east-1"
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(UsageError):
        aws.resolve_region(Settings(host="localhost"))
    assert REGION_CODES["aps1"] == "ap-south-1" and len(REGION_CODES) >= 30


def test_client_uses_standard_retry_mode(aws_env):
    ec = aws.aws_client(Settings(), "elasticache")
    assert ec.meta.config.retries["mode"] == "standard"
    assert ec.meta.config.retries["total_max_attempts"] >= 3


def test_throttling_is_retried_before_reported(moto_world, monkeypatch):
    from botocore.awsrequest import AWSResponse
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    ec = aws.aws_client(Settings(), "elasticache")
    sent = []
    body = (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
        b"<Message>Rate exceeded</Message></Error></ErrorResponse>"
    )

    def throttle(request, **_):
        sent.append(1)
        if len(sent) <= 2:
            return AWSResponse(request.url, 400, {}, _Raw(body))
        return None

    ec.meta.events.register_first("before-send.elasticache.DescribeSnapshots", throttle)
    reply = ec.describe_snapshots()
    assert reply["ResponseMetadata"]["RetryAttempts"] == 2 and len(sent) == 3
    # when it never stops, the throttling is reported as an AWS error, exit 5
    sent.clear()
    ec.meta.events.register_first(
        "before-send.elasticache.DescribeSnapshots",
        lambda request, **_: AWSResponse(request.url, 400, {}, _Raw(body)),
    )
    with pytest.raises(Exception) as err:
        ec.describe_snapshots()
    mapped = classify(err.value)
    assert mapped.exit_code == 5 and "after retries" in mapped.line()


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


@pytest.mark.parametrize(
    "code, exit_code, hint",
    [
        ("AccessDenied", 4, "IAM"),
        ("UnauthorizedOperation", 4, "IAM"),
        ("SnapshotNotFoundFault", 5, "snapshot list"),
        ("ServerlessCacheSnapshotNotFoundFault", 5, "snapshot list"),
        ("SnapshotAlreadyExistsFault", 5, "another name"),
        ("ReplicationGroupAlreadyExists", 5, "another name"),
        ("InvalidReplicationGroupState", 5, "wait until"),
        ("InvalidCacheClusterState", 5, "wait until"),
        ("InvalidSnapshotState", 5, "wait until"),
        ("InvalidServerlessCacheStateFault", 5, "wait until"),
        ("SnapshotQuotaExceededFault", 5, "quota"),
        ("ServerlessCacheSnapshotQuotaExceededFault", 5, "quota"),
        ("Throttling", 5, "throttling"),
    ],
)
def test_aws_error_codes_map_to_spec_exit_codes(code, exit_code, hint):
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": code, "Message": "m"}}, "CreateSnapshot")
    mapped = classify(exc)
    assert mapped.exit_code == exit_code
    assert code in mapped.line() and hint.lower() in mapped.line().lower()
    assert "\n" not in mapped.line()


def test_quick_service_listing_keeps_botocore_behaviour(aws_env):
    from botocore.exceptions import UnknownServiceError

    session = aws.aws_session(Settings())
    known = session.get_component("data_loader").list_available_services("service-2")
    assert {"elasticache", "ec2", "cloudwatch"} <= set(known)
    for service in ("elasticache", "ec2", "cloudwatch"):
        assert aws.aws_client(Settings(), service, session).meta.service_model.service_name
    with pytest.raises(UnknownServiceError):
        aws.aws_client(Settings(), "not-a-service", session)


def test_a_non_aws_answer_is_a_connect_error():
    from botocore.parsers import ResponseParserError

    mapped = classify(ResponseParserError("Unable to parse response: b'<!doctype html>...'"))
    assert mapped.exit_code == 3 and "doctype" not in mapped.line()
    assert "AWS_ENDPOINT_URL" in mapped.line()


def _cluster_mode_group() -> tuple[dict, list[dict]]:
    """A cluster-mode-enabled group as DescribeReplicationGroups / DescribeCacheClusters
    describe it: node group members carry no ReadEndpoint (cluster mode off only); the nodes'
    addresses are only in the member clusters' CacheNodes."""
    suffix = "demo.abc123.use1.cache.amazonaws.com"
    group = {
        "ReplicationGroupId": "demo",
        "Status": "available",
        "ClusterEnabled": True,
        "ConfigurationEndpoint": {"Address": f"clustercfg.{suffix}", "Port": 6379},
        "MemberClusters": ["demo-0001-001", "demo-0002-001"],
        "NodeGroups": [
            {
                "NodeGroupId": ng,
                "NodeGroupMembers": [{"CacheClusterId": f"demo-{ng}-001", "CacheNodeId": "0001"}],
            }
            for ng in ("0001", "0002")
        ],
    }
    clusters = [
        {
            "CacheClusterId": f"demo-{ng}-001",
            "ReplicationGroupId": "demo",
            "CacheNodes": [
                {
                    "CacheNodeId": "0001",
                    "Endpoint": {"Address": f"demo-{ng}-001.{suffix}", "Port": 6379},
                }
            ],
        }
        for ng in ("0001", "0002")
    ]
    return group, clusters


def test_node_endpoint_of_a_cluster_mode_enabled_group_is_matched():
    ec, stub = stubbed("elasticache")
    group, clusters = _cluster_mode_group()
    stub.add_response("describe_serverless_caches", {"ServerlessCaches": []}, {})
    stub.add_response(
        "describe_cache_clusters", {"CacheClusters": clusters}, {"ShowCacheNodeInfo": True}
    )
    stub.add_response("describe_replication_groups", {"ReplicationGroups": [group]}, {})
    host = clusters[1]["CacheNodes"][0]["Endpoint"]["Address"]
    with stub:
        ref = aws.find_cache(Settings(host=host), ec)
    assert ref.name == "demo" and ref.kind == cache_ref.REPLICATION_GROUP
    assert host in ref.addresses()


def test_a_cluster_mode_group_by_name_has_its_node_endpoints():
    ec, stub = stubbed("elasticache")
    group, clusters = _cluster_mode_group()
    not_found(
        stub,
        "describe_serverless_caches",
        "ServerlessCacheNotFoundFault",
        {"ServerlessCacheName": "demo"},
    )
    stub.add_response(
        "describe_replication_groups",
        {"ReplicationGroups": [group]},
        {"ReplicationGroupId": "demo"},
    )
    stub.add_response(
        "describe_cache_clusters", {"CacheClusters": clusters}, {"ShowCacheNodeInfo": True}
    )
    with stub:
        ref = aws.find_cache(Settings(cache="Demo"), ec)
    stub.assert_no_pending_responses()
    nodes = sorted(e["address"] for e in ref.endpoints if e["role"].startswith("node"))
    assert nodes == sorted(c["CacheNodes"][0]["Endpoint"]["Address"] for c in clusters)
