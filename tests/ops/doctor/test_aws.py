"""doctor's AWS checks against moto (EC2 security groups, replication group, CloudWatch
alarms) and a botocore Stubber for what moto lacks (a cache's security groups, serverless)."""

from __future__ import annotations

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import REGION, serverless_desc, stubbed
from helpers.common import server_env

from closeup_ops.errors import AwsResourceError
from closeup_ops.ops.aws.lookup import REPLICATION_GROUP, SERVERLESS, CacheFacts, lookup
from closeup_ops.ops.doctor.aws import (
    aws_checks,
    check_alarms,
    check_backups,
    check_security_groups,
)
from closeup_ops.ops.doctor.sg_rules import matching_rule
from closeup_ops.settings import Settings

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def client(service: str):
    return boto3.client(service, region_name=REGION)


def facts(sgs: list[str], retention: int = 0) -> CacheFacts:
    return CacheFacts(
        name="demo",
        kind=REPLICATION_GROUP,
        status="available",
        port=6379,
        security_group_ids=sgs,
        snapshot_retention=retention,
        member_clusters=["demo-001"],
    )


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


# --- security groups -------------------------------------------------------------------


def test_security_group_without_the_rule_fails_with_the_sg_allow_fix(moto_world):
    check = check_security_groups(
        facts([moto_world.cache_sg]), client("ec2"), Settings(), [moto_world.app_sg], "10.0.1.20"
    )
    assert check.status == "fail"
    assert moto_world.cache_sg in check.evidence and "tcp/6379" in check.evidence
    assert check.fix == (
        f"closeup-ops sg allow --from-sg {moto_world.app_sg} --cache demo --port 6379"
    )


def test_security_group_rule_for_the_client_group_passes(moto_world):
    ec2 = client("ec2")
    ec2.authorize_security_group_ingress(
        GroupId=moto_world.cache_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6379,
                "ToPort": 6379,
                "UserIdGroupPairs": [{"GroupId": moto_world.app_sg}],
            }
        ],
    )
    check = check_security_groups(
        facts([moto_world.cache_sg]), ec2, Settings(), [moto_world.app_sg], "10.0.1.20"
    )
    assert check.status == "ok"
    assert check.evidence == f"{moto_world.cache_sg} allows {moto_world.app_sg} on tcp/6379"
    # another group, or another port, is not let in by that rule
    other = check_security_groups(
        facts([moto_world.cache_sg]), ec2, Settings(), [moto_world.other_sg], "10.0.1.20"
    )
    assert other.status == "fail"


def test_security_group_cidr_rule_matches_the_client_address(moto_world):
    ec2 = client("ec2")
    ec2.authorize_security_group_ingress(
        GroupId=moto_world.cache_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6379,
                "ToPort": 6380,
                "IpRanges": [{"CidrIp": "10.0.1.0/24", "Description": "app subnet"}],
            }
        ],
    )
    ok = check_security_groups(facts([moto_world.cache_sg]), ec2, Settings(), [], "10.0.1.20")
    assert ok.status == "ok" and "10.0.1.0/24" in ok.evidence
    no = check_security_groups(facts([moto_world.cache_sg]), ec2, Settings(), [], "10.0.2.9")
    assert no.status == "fail"
    assert "--cidr 10.0.2.9/32" in no.fix


def test_client_group_found_from_its_network_interface(moto_world):
    ec2 = client("ec2")
    eni = ec2.create_network_interface(
        SubnetId=moto_world.subnet, Groups=[moto_world.app_sg], PrivateIpAddress="10.0.1.77"
    )["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.0.1.77"
    ec2.authorize_security_group_ingress(
        GroupId=moto_world.cache_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6379,
                "ToPort": 6379,
                "UserIdGroupPairs": [{"GroupId": moto_world.app_sg}],
            }
        ],
    )
    check = check_security_groups(facts([moto_world.cache_sg]), ec2, Settings(), [], "10.0.1.77")
    assert check.status == "ok" and moto_world.app_sg in check.evidence


def test_loopback_client_without_a_group_warns():
    groups = [{"GroupId": "sg-1", "IpPermissions": []}]

    class FakeEc2:
        def describe_security_groups(self, GroupIds):
            return {"SecurityGroups": groups}

    check = check_security_groups(facts(["sg-1"]), FakeEc2(), Settings(), [], "127.0.0.1")
    assert check.status == "warn" and "--client-sg" in check.fix


def test_matching_rule_all_traffic_and_ports():
    groups = [
        {
            "GroupId": "sg-1",
            "IpPermissions": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                },
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-app"}]},
            ],
        }
    ]
    assert matching_rule(groups, 6379, ["sg-app"], None) == "sg-1 allows sg-app on tcp/6379"
    assert matching_rule(groups, 6379, [], "1.2.3.4") is None


def test_matching_rule_reads_the_protocol_as_ec2_does():
    """The same rule reading as `sg allow|show` (covers_port): a protocol number or an
    upper-case name is TCP; a -1 port range on TCP is not (EC2 keeps -1 for ICMP)."""

    def group(protocol, low, high):
        perm = {"IpProtocol": protocol, "FromPort": low, "ToPort": high}
        return [
            {"GroupId": "sg-1", "IpPermissions": [{**perm, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}
        ]

    for protocol in ("tcp", "TCP", "6"):
        found = matching_rule(group(protocol, 6379, 6379), 6379, [], "10.1.2.3")
        assert found == "sg-1 allows 10.0.0.0/8 on tcp/6379", protocol
    assert matching_rule(group("tcp", -1, -1), 6379, [], "10.1.2.3") is None
    assert matching_rule(group("udp", 6379, 6379), 6379, [], "10.1.2.3") is None


# --- backups and alarms ----------------------------------------------------------------


def test_cache_without_snapshot_retention_fails(moto_world):
    cache = lookup(client("elasticache"), Settings(cache="demo"))
    assert cache is not None and cache.snapshot_retention == 0
    check = check_backups(cache)
    assert check.status == "fail" and "retention 0" in check.evidence
    assert "modify-replication-group --replication-group-id demo" in check.fix
    assert "--snapshot-retention-limit 7" in check.fix


def test_cache_with_snapshot_retention_passes(moto_world):
    client("elasticache").modify_replication_group(
        ReplicationGroupId="demo", SnapshotRetentionLimit=7
    )
    check = check_backups(lookup(client("elasticache"), Settings(cache="demo")))
    assert check.status == "ok" and "7 days" in check.evidence


def test_no_alarms_fails_then_an_alarm_passes_then_firing_warns(moto_world):
    cw = client("cloudwatch")
    cache = lookup(client("elasticache"), Settings(cache="demo"))
    check = check_alarms(cache, cw)
    assert check.status == "fail" and "put-metric-alarm" in check.fix
    # an alarm on another cache does not count
    cw.put_metric_alarm(
        AlarmName="other-cpu",
        Namespace="AWS/ElastiCache",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=70,
        ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "CacheClusterId", "Value": "other-001"}],
    )
    assert check_alarms(cache, cw).status == "fail"
    cw.put_metric_alarm(
        AlarmName="demo-cpu",
        Namespace="AWS/ElastiCache",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=70,
        ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "CacheClusterId", "Value": "demo-001"}],
    )
    check = check_alarms(cache, cw)
    assert check.status == "ok" and "CPUUtilization" in check.evidence
    cw.set_alarm_state(AlarmName="demo-cpu", StateValue="ALARM", StateReason="test")
    check = check_alarms(cache, cw)
    assert check.status == "warn" and "demo-cpu" in check.evidence


# --- the AWS checks together ------------------------------------------------------------


def test_aws_checks_end_to_end_moto(moto_world):
    checks = by_name(aws_checks(Settings(cache="demo"), client, [moto_world.app_sg], "10.0.1.20"))
    assert checks["aws-cache"].status == "ok"
    assert "replication-group demo" in checks["aws-cache"].evidence
    # moto does not report a replication group's security groups (its member clusters)
    assert checks["security-group"].status == "warn"
    assert checks["backups"].status == "fail"
    assert checks["alarms"].status == "fail"


def test_aws_checks_serverless_via_stubber(moto_world):
    """moto lacks serverless caches: the ElastiCache side is stubbed, EC2 and CloudWatch
    are moto."""
    ec, stub = stubbed("elasticache")
    desc = serverless_desc("demo", sgs=[moto_world.cache_sg])
    desc["SnapshotRetentionLimit"] = 0
    stub.add_response(
        "describe_serverless_caches", {"ServerlessCaches": [desc]}, {"ServerlessCacheName": "demo"}
    )
    services = {"elasticache": ec}

    with stub:
        checks = by_name(
            aws_checks(
                Settings(cache="demo"),
                lambda s: services.get(s) or client(s),
                [moto_world.app_sg],
                "10.0.1.20",
            )
        )
    assert checks["aws-cache"].status == "ok"
    assert checks["security-group"].status == "fail"
    assert "--from-sg" in checks["security-group"].fix
    assert checks["backups"].status == "fail"
    assert "modify-serverless-cache" in checks["backups"].fix
    assert checks["alarms"].status == "fail"
    fix = checks["alarms"].fix
    # ECPUs are a count whose ceiling is the cache's own limit, not a percentage: the alarm
    # that means "the limit was hit" is ThrottledCmds summed above 0
    assert "--metric-name ThrottledCmds" in fix and "--statistic Sum" in fix
    assert "--threshold 0 " in fix and "Name=clusterId,Value=demo" in fix
    assert "ElastiCacheProcessingUnits" not in fix


def test_cache_not_found_fails_and_later_checks_skip(moto_world):
    checks = list(aws_checks(Settings(cache="nope"), client, [], None))
    assert checks[0].status == "fail" and "nope" in checks[0].evidence
    assert [c.status for c in checks[1:]] == ["skip", "skip", "skip"]


def test_found_by_endpoint_address(moto_world):
    address = moto_world.group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    found = lookup(client("elasticache"), Settings(host=address.upper()))
    assert found.name == "demo" and found.kind == REPLICATION_GROUP
    assert found.member_clusters == ["demo-001"] and found.port == 6379
    with pytest.raises(AwsResourceError):
        lookup(client("elasticache"), Settings(host="nothing.use1.cache.amazonaws.com"))


def test_no_credentials_skips(monkeypatch, aws_env):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    checks = list(aws_checks(Settings(cache="demo", region=REGION), client, [], None))
    assert checks[0].status == "skip" and "credentials" in checks[0].evidence


# --- the command, with moto in-process ----------------------------------------------------


def test_doctor_cli_with_aws(cli, moto_world, redis_plain):
    env = server_env(redis_plain, AWS_REGION=REGION)
    r = cli("doctor", "--json", "--cache", "demo", "--client-sg", moto_world.app_sg, env=env)
    assert r.code == 6, r.err
    st = {c["name"]: c["status"] for c in r.json()["checks"]}
    assert st["ping"] == "ok" and st["aws-cache"] == "ok"
    assert st["backups"] == "fail" and st["alarms"] == "fail"
    assert "backups" in r.err and "alarms" in r.err
    r = cli("doctor", "--json", "--cache", "demo", "--no-aws", env=env)
    assert r.code == 0
    assert r.json()["checks"][-4]["evidence"] == "skipped: --no-aws"


@pytest.mark.parametrize("bad", ["sg", "group-1"])
def test_client_sg_must_be_a_group_id(cli, bad):
    assert cli("doctor", "--client-sg", bad).code == 2


# --- issue 12 item 8: prefix lists, the serverless reader port, alarms on every member ------


def _serverless_facts(sgs: list[str]) -> CacheFacts:
    return CacheFacts(
        name="sess",
        kind=SERVERLESS,
        status="available",
        port=6379,
        security_group_ids=sgs,
        ports=[6379, 6380],
    )


def _allow(ec2, group: str, port: int, **source) -> None:
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}],
    )


def test_a_prefix_list_rule_counts_as_access(moto_world):
    ec2 = client("ec2")
    pl = ec2.create_managed_prefix_list(
        PrefixListName="app-subnets",
        MaxEntries=5,
        AddressFamily="IPv4",
        Entries=[{"Cidr": "10.0.9.0/24"}, {"Cidr": "10.0.1.0/24"}],
    )["PrefixList"]["PrefixListId"]
    _allow(ec2, moto_world.cache_sg, 6379, PrefixListIds=[{"PrefixListId": pl}])
    ok = check_security_groups(facts([moto_world.cache_sg]), ec2, Settings(), [], "10.0.1.20")
    assert ok.status == "ok", ok
    assert pl in ok.evidence and "10.0.1.0/24" in ok.evidence
    outside = check_security_groups(facts([moto_world.cache_sg]), ec2, Settings(), [], "10.0.3.3")
    assert outside.status == "fail"


def test_serverless_reader_port_is_checked_too(moto_world):
    ec2 = client("ec2")
    _allow(ec2, moto_world.cache_sg, 6379, UserIdGroupPairs=[{"GroupId": moto_world.app_sg}])
    cache = _serverless_facts([moto_world.cache_sg])
    half = check_security_groups(cache, ec2, Settings(), [moto_world.app_sg], "10.0.1.20")
    assert half.status == "warn" and "tcp/6380" in half.evidence
    assert half.fix.endswith("--port 6380")
    _allow(ec2, moto_world.cache_sg, 6380, UserIdGroupPairs=[{"GroupId": moto_world.app_sg}])
    full = check_security_groups(cache, ec2, Settings(), [moto_world.app_sg], "10.0.1.20")
    assert full.status == "ok"


def _cpu_alarm(cw, name: str, member: str) -> None:
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ElastiCache",
        MetricName="EngineCPUUtilization",
        Statistic="Average",
        Period=300,
        EvaluationPeriods=2,
        Threshold=70,
        ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "CacheClusterId", "Value": member}],
    )


def test_alarms_must_cover_every_member(aws_env):
    from moto import mock_aws

    members = ["shop-0001-001", "shop-0001-002", "shop-0002-001"]
    cache = CacheFacts("shop", REPLICATION_GROUP, "available", member_clusters=members)
    with mock_aws():
        cw = client("cloudwatch")
        none = check_alarms(cache, cw)
        assert none.status == "fail"
        # EngineCPUUtilization (the engine's thread, in %), Average above 70, for EVERY member
        assert "--metric-name EngineCPUUtilization" in none.fix
        assert "--statistic Average" in none.fix and "--threshold 70 " in none.fix
        assert f"for c in {' '.join(members)}; do" in none.fix
        assert "Name=CacheClusterId,Value=$c" in none.fix
        _cpu_alarm(cw, "first-cpu", members[0])
        partial = check_alarms(cache, cw)
        assert partial.status == "warn"
        assert "2 of 3 members" in partial.evidence and members[0] not in partial.fix
        assert all(m in partial.fix for m in members[1:])
        for i, member in enumerate(members[1:]):
            _cpu_alarm(cw, f"cpu-{i}", member)
        assert check_alarms(cache, cw).status == "ok"
