"""`closeup-ops events`: the cache is found in moto (replication group "demo"), and its
events and update actions come from a botocore Stubber (moto has no model for them)."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import ANY
from helpers import aws as aws_helpers
from helpers.aws import REGION, stubbed

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


class Mixed:
    """The moto client, except the calls moto lacks, which go to the stubbed client."""

    STUBBED = {"describe_events", "describe_update_actions"}

    def __init__(self, moto_client, stub_client):
        self._moto, self._stub = moto_client, stub_client

    def __getattr__(self, name):
        return getattr(self._stub if name in self.STUBBED else self._moto, name)


def stub_events(stub, members, events_by_source, updates):
    for source_type, ident in [("replication-group", "demo")] + [
        ("cache-cluster", m) for m in members
    ]:
        stub.add_response(
            "describe_events",
            {"Events": events_by_source.get(ident, [])},
            {
                "SourceIdentifier": ident,
                "SourceType": source_type,
                "StartTime": ANY,
                "EndTime": ANY,
                "MaxRecords": 100,
            },
        )
    stub.add_response(
        "describe_update_actions",
        {"UpdateActions": updates},
        {"ReplicationGroupIds": ["demo"], "UpdateActionStatus": ANY, "MaxRecords": 100},
    )


@pytest.fixture
def mixed(moto_world, monkeypatch):
    import boto3

    from closeup_ops.connect import aws

    ec_moto = boto3.client("elasticache", region_name=REGION)
    members = ec_moto.describe_replication_groups(ReplicationGroupId="demo")["ReplicationGroups"][
        0
    ]["MemberClusters"]
    ec_stub, stub = stubbed("elasticache")
    clients = {
        "elasticache": Mixed(ec_moto, ec_stub),
        "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
    }
    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: clients[service])
    return stub, members


def test_events_newest_first_then_updates_json(cli, mixed):
    stub, members = mixed
    now = dt.datetime.now(dt.timezone.utc)
    stub_events(
        stub,
        members,
        {
            "demo": [
                {
                    "SourceIdentifier": "demo",
                    "SourceType": "replication-group",
                    "Message": "Failover to replica node demo-002 completed",
                    "Date": now - dt.timedelta(hours=3),
                }
            ],
            members[0]: [
                {
                    "SourceIdentifier": members[0],
                    "SourceType": "cache-cluster",
                    "Message": "Cache node 0001 restarted",
                    "Date": now - dt.timedelta(hours=1),
                }
            ],
        },
        [
            {
                "ReplicationGroupId": "demo",
                "ServiceUpdateName": "elasticache-20260101-001",
                "ServiceUpdateSeverity": "important",
                "UpdateActionStatus": "not-applied",
            }
        ],
    )
    with stub:
        r = cli("events", "--cache", "demo", "--since", "6h", "--json", env={"AWS_REGION": REGION})
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["cache"] == "demo" and doc["since_s"] == 6 * 3600
    assert [(e["source"], e["kind"]) for e in doc["events"]] == [
        (members[0], "node-replacement"),
        ("demo", "failover"),
    ]
    assert doc["updates"][0]["service_update"] == "elasticache-20260101-001"


def test_events_human(cli, mixed):
    stub, members = mixed
    stub_events(stub, members, {}, [])
    with stub:
        r = cli("events", "--cache", "demo", env={"AWS_REGION": REGION})
    assert r.code == 0, r.err
    assert "last 1 d" in r.out.splitlines()[0]  # the default window is 24h
    assert "no events in this window" in r.out
    assert "no pending service updates" in r.out


@pytest.mark.parametrize("since", ["1x", "10s", "100d"])
def test_bad_since_exits_2_in_one_line(cli, since):
    r = cli("events", "--cache", "demo", "--since", since)
    assert r.code == 2 and len(r.err_lines) == 1 and "--since" in r.err


def test_unknown_cache_exits_5(cli, moto_world):
    r = cli("events", "--cache", "nope", env={"AWS_REGION": REGION})
    assert r.code == 5 and len(r.err_lines) == 1 and "nope" in r.err
