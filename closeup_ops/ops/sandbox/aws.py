"""The sandbox's AWS account: moto plus the ElastiCache Serverless front
(local/aws_serverless.py), seeded with a VPC, subnets, security groups, a replication group
with a snapshot and, with --serverless, the stand-in serverless cache."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from closeup_ops.errors import ConnectError, UsageError
from closeup_ops.local.servers import LOOPBACK, free_port

CACHE_NAME = "sandbox-rg"
REGION = "us-east-1"
FAKE_KEY = "sandbox"  # moto accepts any credentials; these are not secrets
USER_GROUP = "closeup-app-users"


def require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise UsageError(
            "the sandbox's AWS stand-in needs moto",
            "pip install 'closeup-ops[sandbox]', or run `sandbox up --no-aws`",
        ) from None


def start_aws(directory: Path, delay: float = 1.0) -> tuple[int, int]:
    """moto + the serverless front in one process; returns (port, pid) once it answers."""
    port = free_port()
    log = open(directory / "aws.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "closeup_ops.local.aws_serverless", "-H", LOOPBACK, "-p", str(port)]
        + ["--delay", str(delay)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConnectError("the AWS stand-in exited", f"see {directory / 'aws.log'}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return port, proc.pid
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise ConnectError("the AWS stand-in did not start in 30 s", f"see {directory / 'aws.log'}")


def _clients(endpoint: str) -> tuple[Any, Any]:
    import botocore.session

    session = botocore.session.get_session()
    kw = dict(
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    return session.create_client("ec2", **kw), session.create_client("elasticache", **kw)


def seed_aws(endpoint: str) -> dict[str, Any]:
    """A VPC with two subnets, an app and a cache security group, a replication group and
    its snapshot."""
    ec2, ec = _clients(endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, f"{REGION}a"), (2, f"{REGION}b"))
    ]
    app_sg = ec2.create_security_group(
        GroupName="closeup-api", Description="Close-Up API", VpcId=vpc
    )["GroupId"]
    cache_sg = ec2.create_security_group(
        GroupName="closeup-cache", Description="Close-Up cache", VpcId=vpc
    )["GroupId"]
    ec.create_cache_subnet_group(
        CacheSubnetGroupName="sandbox-subnets",
        CacheSubnetGroupDescription="sandbox",
        SubnetIds=subnets,
    )
    ec.create_replication_group(
        ReplicationGroupId=CACHE_NAME,
        ReplicationGroupDescription="closeup-ops sandbox",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t4g.micro",
        NumCacheClusters=2,
        AutomaticFailoverEnabled=True,
        CacheSubnetGroupName="sandbox-subnets",
        SecurityGroupIds=[cache_sg],
        TransitEncryptionEnabled=True,
        SnapshotRetentionLimit=7,
    )
    ec.create_snapshot(ReplicationGroupId=CACHE_NAME, SnapshotName=f"{CACHE_NAME}-seed")
    return {
        "vpc": vpc,
        "subnet": subnets[0],
        "subnets": subnets,
        "app_security_group": app_sg,
        "cache_security_group": cache_sg,
        "replication_group": CACHE_NAME,
        "snapshot": f"{CACHE_NAME}-seed",
    }


def seed_serverless(
    endpoint: str, aws: dict[str, Any], cache: str, address: str, port: int, reader_port: int
) -> str:
    """Describe the stand-in to the serverless front: its endpoint and reader, the cache
    security group, both subnets, an RBAC user group. Returns its ARN."""
    desc = {
        "ServerlessCacheName": cache,
        "Description": "closeup-ops sandbox: serverless stand-in",
        "Engine": "redis",
        "MajorEngineVersion": "7",
        "FullEngineVersion": "7.1",
        "SecurityGroupIds": [aws["cache_security_group"]],
        "SubnetIds": list(aws["subnets"]),
        "Endpoint": {"Address": address, "Port": port},
        "ReaderEndpoint": {"Address": address, "Port": reader_port},
        "UserGroupId": USER_GROUP,
        "SnapshotRetentionLimit": 1,
        "DailySnapshotTime": "03:00",
        "Region": REGION,
    }
    request = urllib.request.Request(
        endpoint + "/_closeup/serverless-caches",
        data=json.dumps(desc).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())["ARN"]


def seed_cloudwatch(endpoint: str, cache: str, used_bytes: int, keys: int) -> None:
    """The last 30 minutes of the serverless cache's metrics (quiet, healthy numbers sized
    from the stand-in's own INFO) and an alarm on its ECPUs, as a set-up cache has."""
    import datetime

    import botocore.session

    cw = botocore.session.get_session().create_client(
        "cloudwatch",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    dims = [{"Name": "clusterId", "Value": cache}]
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    values = {
        "ElastiCacheProcessingUnits": 1200.0,
        "BytesUsedForCache": float(used_bytes),
        "CurrConnections": 3.0,
        "CacheHits": float(keys),
        "CacheMisses": 4.0,
        "Evictions": 0.0,
        "ThrottledCmds": 0.0,
    }
    data = [
        {
            "MetricName": name,
            "Dimensions": dims,
            "Timestamp": now - datetime.timedelta(minutes=m),
            "Value": value,
        }
        for name, value in values.items()
        for m in range(1, 31)
    ]
    cw.put_metric_data(Namespace="AWS/ElastiCache", MetricData=data)
    cw.put_metric_alarm(
        AlarmName=f"{cache}-ecpu",
        Namespace="AWS/ElastiCache",
        MetricName="ElastiCacheProcessingUnits",
        Dimensions=dims,
        Statistic="Average",
        Period=300,
        EvaluationPeriods=2,
        Threshold=5_000_000,
        ComparisonOperator="GreaterThanThreshold",
    )


def aws_exports(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
        "AWS_REGION": REGION,
    }
