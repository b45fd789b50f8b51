"""AWS test helpers: fake credentials, a moto world (VPC, security groups, subnet group, a
replication group and a cache cluster), and botocore Stubber clients for what moto lacks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class World:
    vpc: str
    subnet: str
    cache_sg: str
    app_sg: str
    other_sg: str
    group: dict[str, Any]  # the replication group "demo"


def build_world(region: str = REGION, endpoint_url: str | None = None) -> World:
    import boto3

    kw = {"region_name": region, "endpoint_url": endpoint_url}
    ec2 = boto3.client("ec2", **kw)
    ec = boto3.client("elasticache", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    groups = [
        ec2.create_security_group(GroupName=n, Description=n, VpcId=vpc)["GroupId"]
        for n in ("cache", "app", "other")
    ]
    ec.create_cache_subnet_group(
        CacheSubnetGroupName="cache-subnets",
        CacheSubnetGroupDescription="cache subnets",
        SubnetIds=[subnet],
    )
    group = ec.create_replication_group(
        ReplicationGroupId="demo",
        ReplicationGroupDescription="demo cache",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t4g.small",
        NumCacheClusters=1,
        CacheSubnetGroupName="cache-subnets",
        SecurityGroupIds=[groups[0]],
        TransitEncryptionEnabled=True,
    )["ReplicationGroup"]
    ec.create_cache_cluster(
        CacheClusterId="single",
        Engine="redis",
        EngineVersion="7.0",
        CacheNodeType="cache.t4g.micro",
        NumCacheNodes=1,
        CacheSubnetGroupName="cache-subnets",
        SecurityGroupIds=[groups[0]],
    )
    return World(vpc, subnet, groups[0], groups[1], groups[2], group)


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return FAKE_ENV


@pytest.fixture
def moto_world(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield build_world()


def stubbed(service: str, region: str = REGION):
    """(client, Stubber) with fake credentials: every call must be stubbed, and each
    stubbed request and response is checked against the real API model."""
    import botocore.session
    from botocore.stub import Stubber

    session = botocore.session.Session()
    client = session.create_client(
        service, region_name=region, aws_access_key_id="x", aws_secret_access_key="y"
    )
    return client, Stubber(client)


def serverless_desc(name: str = "demo", sgs: list[str] | None = None) -> dict[str, Any]:
    host = f"{name}-du95w6.serverless.aps1.cache.amazonaws.com"
    return {
        "ServerlessCacheName": name,
        "Status": "available",
        "Engine": "valkey",
        "MajorEngineVersion": "8",
        "FullEngineVersion": "8.0",
        "SecurityGroupIds": sgs if sgs is not None else ["sg-0cache"],
        "SubnetIds": ["subnet-a", "subnet-b"],
        "Endpoint": {"Address": host, "Port": 6379},
        "ReaderEndpoint": {"Address": host, "Port": 6380},
        "ARN": f"arn:aws:elasticache:ap-south-1:123456789012:serverlesscache:{name}",
    }


def not_found(stub, method: str, code: str, params: dict | None = None) -> None:
    stub.add_client_error(
        method, service_error_code=code, http_status_code=404, expected_params=params
    )


def _no_serverless(stub, name: str) -> None:
    not_found(
        stub, "describe_serverless_caches", "ServerlessCacheNotFoundFault",
        {"ServerlessCacheName": name},
    )  # fmt: skip


def _no_group(stub, name: str) -> None:
    not_found(
        stub, "describe_replication_groups", "ReplicationGroupNotFoundFault",
        {"ReplicationGroupId": name},
    )  # fmt: skip


def source_gone(stub, name: str) -> None:
    """describe_by_name(name) finds no cache of any kind: three NotFound answers."""
    _no_serverless(stub, name)
    _no_group(stub, name)
    not_found(
        stub, "describe_cache_clusters", "CacheClusterNotFound",
        {"CacheClusterId": name, "ShowCacheNodeInfo": True},
    )  # fmt: skip


def source_found(stub, group: dict, members: list[dict]) -> None:
    """describe_by_name finds the replication group `group` with its member clusters."""
    name = group["ReplicationGroupId"]
    _no_serverless(stub, name)
    stub.add_response(
        "describe_replication_groups", {"ReplicationGroups": [group]}, {"ReplicationGroupId": name}
    )
    stub.add_response(
        "describe_cache_clusters", {"CacheClusters": members}, {"ShowCacheNodeInfo": True}
    )


def cluster_found(stub, cluster: dict) -> None:
    """describe_by_name finds the stand-alone cache cluster `cluster`."""
    name = cluster["CacheClusterId"]
    _no_serverless(stub, name)
    _no_group(stub, name)
    stub.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [cluster]},
        {"CacheClusterId": name, "ShowCacheNodeInfo": True},
    )


class Clock:
    """A fake monotonic clock whose sleep() only advances it (and records the waits)."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
