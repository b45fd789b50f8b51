"""Security group rules against moto's EC2: allow, idempotence, revoke exactly, show, dry run."""

from __future__ import annotations

import re

import boto3
import pytest
from helpers import aws as aws_helpers
from helpers.aws import serverless_desc

from closeup_ops.connect import cache_ref
from closeup_ops.errors import AwsResourceError, UsageError
from closeup_ops.ops.aws import security_groups as ops

# pytest fixtures shared with the other AWS tests
aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def ec2():
    return boto3.client("ec2", region_name="us-east-1")


def ingress(group_id: str) -> list[dict]:
    return [
        r
        for r in ec2().describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group_id]}]
        )["SecurityGroupRules"]
        if not r["IsEgress"]
    ]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "0.0.0.0/0 ", "::0/0"])
def test_the_whole_internet_is_refused(cidr):
    with pytest.raises(UsageError) as err:
        ops.parse_source(None, cidr)
    assert err.value.exit_code == 2 and "whole internet" in err.value.line()


def test_source_parsing():
    assert ops.parse_source("sg-123", None) == ops.Source("sg", "sg-123")
    assert ops.parse_source(None, "10.0.1.7/24") == ops.Source("ipv4", "10.0.1.0/24")
    assert ops.parse_source(None, "2001:db8::/64").kind == "ipv6"
    for bad in (("sg-1", "10.0.0.0/8"), (None, None), ("web", None), (None, "10.0.0.300/8")):
        with pytest.raises(UsageError):
            ops.parse_source(*bad)


def test_description_names_who_and_when():
    assert re.fullmatch(r"closeup-ops: [^@ ]+@\S+ \d{4}-\d{2}-\d{2}", ops.default_description())


def test_ports_from_the_cache():
    serverless = cache_ref.serverless_ref(serverless_desc())
    assert ops.cache_ports(serverless) == [6379, 6380]
    node = cache_ref.CacheRef(cache_ref.CACHE_CLUSTER, "c", ports=[6390])
    assert ops.cache_ports(node) == [6390] and ops.cache_ports(node, 7000) == [7000]


def test_choose_group_needs_group_id_when_several():
    many = cache_ref.CacheRef(cache_ref.SERVERLESS, "s", security_group_ids=["sg-a", "sg-b"])
    with pytest.raises(UsageError) as err:
        ops.choose_group(many, None)
    assert "sg-a, sg-b" in err.value.line() and "--group-id" in err.value.line()
    assert ops.choose_group(many, "sg-b") == "sg-b"
    with pytest.raises(AwsResourceError):
        ops.choose_group(cache_ref.CacheRef(cache_ref.CACHE_CLUSTER, "c"), None)


def test_allow_is_idempotent_and_described(moto_world):
    w, client = moto_world, ec2()
    source = ops.Source("sg", w.app_sg)
    first = ops.allow(client, w.cache_sg, source, [6379, 6380], "closeup-ops: me@here 2026-01-01")
    assert [p.status for p in first.ports] == [ops.ADDED, ops.ADDED]
    again = ops.allow(client, w.cache_sg, source, [6379, 6380], "other text")
    assert [p.status for p in again.ports] == [ops.ALREADY, ops.ALREADY]
    rules = ingress(w.cache_sg)
    assert sorted(r["FromPort"] for r in rules) == [6379, 6380]
    perms = ec2().describe_security_groups(GroupIds=[w.cache_sg])["SecurityGroups"][0]
    descriptions = {p["UserIdGroupPairs"][0]["Description"] for p in perms["IpPermissions"]}
    assert descriptions == {"closeup-ops: me@here 2026-01-01"}


def test_dry_run_changes_nothing(moto_world):
    w, client = moto_world, ec2()
    change = ops.allow(
        client, w.cache_sg, ops.Source("ipv4", "10.9.0.0/16"), [6379], "d", dry_run=True
    )
    assert [p.status for p in change.ports] == [ops.WOULD_ADD] and ingress(w.cache_sg) == []


def test_revoke_removes_exactly_that_rule(moto_world):
    w, client = moto_world, ec2()
    ops.allow(client, w.cache_sg, ops.Source("sg", w.app_sg), [6379], "d")
    ops.allow(client, w.cache_sg, ops.Source("sg", w.other_sg), [6379], "d")
    ops.allow(client, w.cache_sg, ops.Source("ipv4", "10.1.0.0/16"), [6379], "d")
    dry = ops.revoke(client, w.cache_sg, ops.Source("sg", w.app_sg), [6379], dry_run=True)
    assert dry.ports[0].status == ops.WOULD_REMOVE and len(ingress(w.cache_sg)) == 3
    done = ops.revoke(client, w.cache_sg, ops.Source("sg", w.app_sg), [6379])
    assert done.ports[0].status == ops.REMOVED
    left = {ops.rule_source(r) for r in ingress(w.cache_sg)}
    assert left == {w.other_sg, "10.1.0.0/16"}
    again = ops.revoke(client, w.cache_sg, ops.Source("sg", w.app_sg), [6379])
    assert again.ports[0].status == ops.ABSENT


def test_revoke_notes_a_wider_rule_it_leaves(moto_world):
    w, client = moto_world, ec2()
    client.authorize_security_group_ingress(
        GroupId=w.cache_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6000,
                "ToPort": 7000,
                "IpRanges": [{"CidrIp": "10.2.0.0/16"}],
            }
        ],
    )
    change = ops.revoke(client, w.cache_sg, ops.Source("ipv4", "10.2.0.0/16"), [6379])
    assert change.ports[0].status == ops.ABSENT and "still allowed" in change.ports[0].note
    # and allow treats the wider rule as already allowing the port
    change = ops.allow(client, w.cache_sg, ops.Source("ipv4", "10.2.0.0/16"), [6379], "d")
    assert change.ports[0].status == ops.ALREADY


def test_show_lists_rules_covering_the_ports(moto_world):
    w, client = moto_world, ec2()
    ops.allow(client, w.cache_sg, ops.Source("sg", w.app_sg), [6379], "app")
    client.authorize_security_group_ingress(
        GroupId=w.cache_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.3.0.0/16"}],
            }
        ],
    )
    ops.allow(client, w.cache_sg, ops.Source("ipv4", "10.4.0.0/16"), [6380], "vpn")
    views = ops.show(client, [w.cache_sg], [6379, 6380])
    assert [(v.source, v.covers) for v in views] == [(w.app_sg, [6379]), ("10.4.0.0/16", [6380])]
    # (moto leaves out the description of group-referencing rules; AWS returns it)
    assert views[1].description == "vpn"


# --- issue 12 item 8 ----------------------------------------------------------------------

# EC2's rule for a rule description (service model: IpRange/UserIdGroupPair/PrefixListId
# Description): a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=;{}!$*, at most 255 characters.
EC2_DESCRIPTION = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]{0,255}")


@pytest.mark.parametrize(
    "actor",
    ["CORP\\jane@laptop", "o'brien@host", "jürgen@büro", "ops user@host%1", "x" * 300 + "@h"],
)
def test_default_description_uses_only_what_ec2_accepts(monkeypatch, actor):
    from closeup_ops import audit

    monkeypatch.setattr(audit, "actor", lambda: actor)
    text = ops.default_description()
    assert EC2_DESCRIPTION.fullmatch(text), text
    assert text.startswith("closeup-ops: ")


@pytest.mark.parametrize("text", ["it's mine", "tab\there", "a" * 256, "ünïcode"])
def test_a_description_ec2_refuses_is_a_usage_error(text):
    with pytest.raises(UsageError) as err:
        ops.check_description(text)
    assert err.value.exit_code == 2


def test_serverless_memcached_ports_are_not_redis_ports():
    desc = dict(serverless_desc("mc"), Engine="memcached")
    host = desc["Endpoint"]["Address"]
    desc["Endpoint"] = {"Address": host, "Port": 11211}
    desc["ReaderEndpoint"] = {"Address": host, "Port": 11212}
    assert ops.cache_ports(cache_ref.serverless_ref(desc)) == [11211, 11212]
    # ports not reported: memcached's own defaults, never 6379/6380
    bare = {k: v for k, v in desc.items() if k not in ("Endpoint", "ReaderEndpoint")}
    assert ops.cache_ports(cache_ref.serverless_ref(bare)) == [11211, 11212]
    valkey = {k: v for k, v in serverless_desc("v").items() if k != "ReaderEndpoint"}
    assert ops.cache_ports(cache_ref.serverless_ref(valkey)) == [6379, 6380]


@pytest.mark.parametrize(
    "rule, port, expected",
    [
        # Written from EC2's IpPermission reference: "-1" is every protocol on every port;
        # tcp (or its number, 6) needs FromPort..ToPort; -1 ports are ICMP wildcards only.
        ({"IpProtocol": "-1"}, 6379, True),
        ({"IpProtocol": "-1", "FromPort": 0, "ToPort": 0}, 6379, True),
        ({"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6380}, 6380, True),
        ({"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6380}, 6381, False),
        ({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535}, 6379, True),
        ({"IpProtocol": "TCP", "FromPort": 6379, "ToPort": 6379}, 6379, True),
        ({"IpProtocol": "6", "FromPort": 6379, "ToPort": 6379}, 6379, True),
        ({"IpProtocol": "udp", "FromPort": 6379, "ToPort": 6379}, 6379, False),
        ({"IpProtocol": "17", "FromPort": 0, "ToPort": 65535}, 6379, False),
        ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1}, 6379, False),
        ({"IpProtocol": "tcp", "FromPort": -1, "ToPort": -1}, 6379, False),
        ({"IpProtocol": "tcp"}, 6379, False),
    ],
)
def test_which_rules_let_tcp_in_on_a_port(rule, port, expected):
    assert ops.covers_port(rule, port) is expected


def test_a_port_that_fails_after_another_was_added_says_what_was_done(moto_world):
    """EC2 allows 60 inbound rules per VPC group (moto models the quota): with 59 taken,
    a two-port allow (a serverless cache's 6379 and 6380) adds the first and is refused the
    second. The error, and so the audit line, says the first was added and by which rule."""
    w, client = moto_world, ec2()
    for i in range(59 - len(ingress(w.cache_sg))):
        client.authorize_security_group_ingress(
            GroupId=w.cache_sg,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 7000 + i, "ToPort": 7000 + i,
                 "IpRanges": [{"CidrIp": "10.50.0.0/16"}]}
            ],
        )  # fmt: skip
    with pytest.raises(AwsResourceError) as err:
        ops.allow(client, w.cache_sg, ops.Source("ipv4", "10.9.0.0/16"), [6379, 6380], "d")
    (added,) = [r for r in ingress(w.cache_sg) if r.get("CidrIpv4") == "10.9.0.0/16"]
    assert added["FromPort"] == 6379
    line = err.value.line()
    assert "RulesPerSecurityGroupLimitExceeded" in line or "limit" in line.lower()
    assert f"port 6379 added ({added['SecurityGroupRuleId']})" in line
