"""The sandbox's serverless front on moto: a botocore client parses every field it sends,
statuses move creating -> available (and deleting -> gone), faults carry the model's codes,
and everything else still reaches moto. Expected shapes come from botocore's service model."""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.request

import pytest

pytest.importorskip("moto")

DELAY = 0.3


@pytest.fixture(scope="module")
def front():
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from closeup_ops.local.aws_serverless import make_app

    app = make_app(DELAY)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app.state
    server.shutdown()
    thread.join(10)


def client(url: str, service: str = "elasticache", region: str = "us-east-1"):
    import botocore.session

    return botocore.session.get_session().create_client(
        service,
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def adopt(url: str, **desc) -> str:
    request = urllib.request.Request(
        url + "/_closeup/serverless-caches", data=json.dumps(desc).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())["ARN"]


def wait_status(fetch, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if got["Status"] == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def public(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def same(parsed: dict, stored: dict) -> None:
    """Every stored field came back, with its value (timestamps to the second)."""
    for key, value in public(stored).items():
        assert key in parsed, f"{key} did not parse"
        got = parsed[key]
        if isinstance(value, datetime.datetime):
            assert abs((got - value).total_seconds()) < 1, key
        elif isinstance(value, dict):
            same(got, value)
        else:
            assert got == value, key


def test_every_field_of_an_adopted_cache_parses(front):
    url, state = front
    ec = client(url)
    arn = adopt(
        url,
        ServerlessCacheName="parsed",
        Description="a & b <c>",  # escaped in XML
        Engine="valkey",
        MajorEngineVersion="8",
        FullEngineVersion="8.0",
        SecurityGroupIds=["sg-0aaa", "sg-0bbb"],
        SubnetIds=["subnet-1", "subnet-2"],
        Endpoint={"Address": "parsed-abc123.serverless.use1.cache.amazonaws.com", "Port": 6379},
        ReaderEndpoint={
            "Address": "parsed-abc123.serverless.use1.cache.amazonaws.com",
            "Port": 6380,
        },
        UserGroupId="app-users",
        SnapshotRetentionLimit=3,
        DailySnapshotTime="04:30",
        CacheUsageLimits={"DataStorage": {"Maximum": 10, "Unit": "GB"}},
    )
    assert arn == "arn:aws:elasticache:us-east-1:123456789012:serverlesscache:parsed"
    got = ec.describe_serverless_caches(ServerlessCacheName="parsed")["ServerlessCaches"]
    assert len(got) == 1
    same(got[0], state.caches["parsed"])
    assert got[0]["SecurityGroupIds"] == ["sg-0aaa", "sg-0bbb"]
    assert got[0]["CacheUsageLimits"]["DataStorage"] == {"Maximum": 10, "Unit": "GB"}


def test_snapshot_create_list_restore_delete(front):
    url, state = front
    ec = client(url)
    adopt(
        url,
        ServerlessCacheName="src",
        SecurityGroupIds=["sg-0src"],
        SubnetIds=["subnet-a"],
        Endpoint={"Address": "src-aaaaaa.serverless.use1.cache.amazonaws.com", "Port": 6379},
    )
    made = ec.create_serverless_cache_snapshot(
        ServerlessCacheSnapshotName="src-snap", ServerlessCacheName="src"
    )["ServerlessCacheSnapshot"]
    assert made["Status"] == "creating"
    same(made, state.snapshots["src-snap"] | {"Status": "creating"})

    def snap() -> dict:
        return ec.describe_serverless_cache_snapshots(ServerlessCacheSnapshotName="src-snap")[
            "ServerlessCacheSnapshots"
        ][0]

    assert wait_status(snap, "available")["Status"] == "available"
    listed = ec.describe_serverless_cache_snapshots(ServerlessCacheName="src")
    assert [s["ServerlessCacheSnapshotName"] for s in listed["ServerlessCacheSnapshots"]] == [
        "src-snap"
    ]
    assert listed["ServerlessCacheSnapshots"][0]["ServerlessCacheConfiguration"] == {
        "ServerlessCacheName": "src",
        "Engine": "redis",
        "MajorEngineVersion": "7",
    }

    new = ec.create_serverless_cache(
        ServerlessCacheName="src-restored",
        Engine="redis",
        SnapshotArnsToRestore=[made["ARN"]],
        SecurityGroupIds=["sg-0src", "sg-0two"],
        SubnetIds=["subnet-a"],
    )["ServerlessCache"]
    assert new["Status"] == "creating"
    assert new["SecurityGroupIds"] == ["sg-0src", "sg-0two"]  # list parameters read back
    assert new["Endpoint"]["Address"].startswith("src-restored-")
    assert new["Endpoint"]["Address"].endswith(".serverless.use1.cache.amazonaws.com")
    assert (new["Endpoint"]["Port"], new["ReaderEndpoint"]["Port"]) == (6379, 6380)

    def cache() -> dict:
        return ec.describe_serverless_caches(ServerlessCacheName="src-restored")[
            "ServerlessCaches"
        ][0]

    assert wait_status(cache, "available")["Status"] == "available"

    gone = ec.delete_serverless_cache_snapshot(ServerlessCacheSnapshotName="src-snap")
    assert gone["ServerlessCacheSnapshot"]["Status"] == "deleting"
    deadline = time.monotonic() + 10
    while "src-snap" in state.snapshots and time.monotonic() < deadline:
        ec.describe_serverless_cache_snapshots()  # the clock moves on a request
        time.sleep(0.05)
    with pytest.raises(ec.exceptions.ServerlessCacheSnapshotNotFoundFault):
        ec.describe_serverless_cache_snapshots(ServerlessCacheSnapshotName="src-snap")

    deleted = ec.delete_serverless_cache(ServerlessCacheName="src-restored")["ServerlessCache"]
    assert deleted["Status"] == "deleting"


def test_events_of_what_happened_here(front):
    url, state = front
    ec = client(url)
    adopt(url, ServerlessCacheName="evented", Endpoint={"Address": "ev", "Port": 1})
    ec.create_serverless_cache_snapshot(
        ServerlessCacheSnapshotName="ev-snap", ServerlessCacheName="evented"
    )

    def snap() -> dict:
        return ec.describe_serverless_cache_snapshots(ServerlessCacheSnapshotName="ev-snap")[
            "ServerlessCacheSnapshots"
        ][0]

    wait_status(snap, "available")
    got = ec.describe_events(SourceIdentifier="evented", SourceType="serverless-cache")
    messages = [e["Message"] for e in got["Events"]]
    assert messages == ["Snapshot ev-snap completed", "Snapshot ev-snap started"]  # newest first
    assert all(e["SourceType"] == "serverless-cache" for e in got["Events"])
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    assert ec.describe_events(SourceIdentifier="evented", StartTime=later)["Events"] == []
    assert ec.describe_events(SourceIdentifier="other-cache")["Events"] == []


def test_faults_carry_the_models_codes(front):
    url, _ = front
    ec = client(url)
    with pytest.raises(ec.exceptions.ServerlessCacheNotFoundFault) as missing:
        ec.describe_serverless_caches(ServerlessCacheName="no-such-cache")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ec.exceptions.ServerlessCacheNotFoundFault):
        ec.create_serverless_cache_snapshot(
            ServerlessCacheSnapshotName="x", ServerlessCacheName="no-such-cache"
        )
    adopt(url, ServerlessCacheName="dup", Endpoint={"Address": "d", "Port": 1})
    with pytest.raises(ec.exceptions.ServerlessCacheAlreadyExistsFault):
        ec.create_serverless_cache(ServerlessCacheName="dup", Engine="redis")
    with pytest.raises(ec.exceptions.ClientError) as bad_arn:
        ec.create_serverless_cache(
            ServerlessCacheName="from-nothing",
            Engine="redis",
            SnapshotArnsToRestore=["arn:aws:elasticache:us-east-1:1:serverlesscachesnapshot:x"],
        )
    assert bad_arn.value.response["Error"]["Code"] == "InvalidParameterValue"
    # a snapshot still creating cannot be deleted
    ec.create_serverless_cache_snapshot(
        ServerlessCacheSnapshotName="busy", ServerlessCacheName="dup"
    )
    with pytest.raises(ec.exceptions.InvalidServerlessCacheSnapshotStateFault):
        ec.delete_serverless_cache_snapshot(ServerlessCacheSnapshotName="busy")


def test_regions_are_separate_and_the_rest_is_moto(front):
    url, _ = front
    adopt(url, ServerlessCacheName="east", Endpoint={"Address": "e", "Port": 1})
    west = client(url, region="us-west-2")
    names = [
        c["ServerlessCacheName"] for c in west.describe_serverless_caches()["ServerlessCaches"]
    ]
    assert "east" not in names
    ec2 = client(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    assert vpc.startswith("vpc-")
    ec = client(url)
    ec.create_cache_subnet_group(
        CacheSubnetGroupName="g",
        CacheSubnetGroupDescription="g",
        SubnetIds=[ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]],
    )
    assert [
        g["CacheSubnetGroupName"] for g in ec.describe_cache_subnet_groups()["CacheSubnetGroups"]
    ] == ["g"]
