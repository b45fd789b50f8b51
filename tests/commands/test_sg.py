"""`closeup-ops sg allow|revoke|show` driven as a user would (moto EC2; Stubber for a
serverless cache's groups, which moto's ElastiCache does not report)."""

from __future__ import annotations

import boto3
from helpers import aws as aws_helpers
from helpers.aws import serverless_desc, stubbed

from closeup_ops import audit

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def entries(tmp_path):
    return audit.read_entries(tmp_path / "state" / "closeup-ops" / "audit.log")


def ingress(group_id):
    rules = boto3.client("ec2", region_name="us-east-1").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroupRules"]
    return [r for r in rules if not r["IsEgress"]]


def test_allow_twice_revoke_show(cli, moto_world, tmp_path):
    w = moto_world
    base = ("--cache", "demo", "--group-id", w.cache_sg)
    r = cli("sg", "allow", "--from-sg", w.app_sg, *base, "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert [p["status"] for p in doc["ports"]] == ["added"] and doc["ports"][0]["port"] == 6379
    assert doc["description"].startswith("closeup-ops: ")
    r = cli("sg", "allow", "--from-sg", w.app_sg, *base)
    assert r.code == 0 and "already allowed" in r.out
    assert len(ingress(w.cache_sg)) == 1
    r = cli("sg", "allow", "--cidr", "10.8.0.0/16", *base, "--description", "office VPN")
    assert r.code == 0 and "added" in r.out
    r = cli("sg", "show", *base, "--json")
    assert r.code == 0, r.err
    assert {x["source"] for x in r.json()["rules"]} == {w.app_sg, "10.8.0.0/16"}
    r = cli("sg", "revoke", "--from-sg", w.app_sg, *base)
    assert r.code == 0 and "removed" in r.out
    assert [x["CidrIpv4"] for x in ingress(w.cache_sg)] == ["10.8.0.0/16"]
    r = cli("sg", "show", *base)
    assert r.code == 0 and "10.8.0.0/16" in r.out and "office VPN" in r.out
    log = entries(tmp_path)
    assert [e["command"] for e in log] == ["sg allow", "sg allow", "sg allow", "sg revoke"]
    assert log[1]["result"] == "6379: already allowed" and log[0]["target"] == w.cache_sg
    assert log[0]["source"] == w.app_sg and log[0]["cache"] == "demo"


def test_whole_internet_refused_before_any_call(cli, moto_world, tmp_path):
    for cidr in ("0.0.0.0/0", "::/0"):
        r = cli("sg", "allow", "--cidr", cidr, "--group-id", moto_world.cache_sg)
        assert r.code == 2 and "whole internet" in r.err and len(r.err_lines) == 1
    assert ingress(moto_world.cache_sg) == [] and entries(tmp_path) == []


def test_dry_run_uses_ec2_dry_run(cli, moto_world, tmp_path):
    w = moto_world
    r = cli("sg", "allow", "--from-sg", w.app_sg, "--group-id", w.cache_sg, "--dry-run")
    assert r.code == 0 and "dry run" in r.out and "would add" in r.out
    assert ingress(w.cache_sg) == [] and entries(tmp_path) == []


def test_source_is_required(cli, moto_world):
    r = cli("sg", "allow", "--group-id", moto_world.cache_sg)
    assert r.code == 2 and "--from-sg" in r.err
    r = cli("sg", "allow", "--cidr", "10.0.0.0/8", "--group-id", "web")
    assert r.code == 2 and "sg-" in r.err
    r = cli(
        "sg", "allow", "--cidr", "10.0.0.0/8", "--group-id", moto_world.cache_sg, "--port", "70000"
    )
    assert r.code == 2


def test_unknown_group_exits_5(cli, moto_world):
    r = cli(
        "sg",
        "allow",
        "--cidr",
        "10.0.0.0/8",
        "--group-id",
        "sg-0000000000000dead",
        "--port",
        "6379",
    )
    assert r.code == 5 and "NotFound" in r.err


def _patch(monkeypatch, **clients):
    from closeup_ops.connect import aws

    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: clients[service])


def _serverless(stub, sgs):
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [serverless_desc("sv", sgs)]},
        {"ServerlessCacheName": "sv"},
    )


def test_serverless_cache_gets_6379_and_6380_on_its_group(cli, aws_env, monkeypatch, tmp_path):
    ec, stub = stubbed("elasticache")
    _serverless(stub, ["sg-0cache"])
    ec2, ec2_stub = stubbed("ec2")
    ec2_stub.add_response("describe_security_group_rules", {"SecurityGroupRules": []})
    for port, rule in ((6379, "sgr-1"), (6380, "sgr-2")):
        perm = {
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "UserIdGroupPairs": [{"GroupId": "sg-0app", "Description": "app"}],
        }
        ec2_stub.add_response(
            "authorize_security_group_ingress",
            {"Return": True, "SecurityGroupRules": [{"SecurityGroupRuleId": rule}]},
            {"GroupId": "sg-0cache", "IpPermissions": [perm], "DryRun": False},
        )
    _patch(monkeypatch, elasticache=ec, ec2=ec2)
    with stub, ec2_stub:
        r = cli(
            "sg", "allow", "--cache", "sv", "--from-sg", "sg-0app", "--description", "app", "--json"
        )
    assert r.code == 0, r.err
    assert [(p["port"], p["rule_id"]) for p in r.json()["ports"]] == [
        (6379, "sgr-1"),
        (6380, "sgr-2"),
    ]
    ec2_stub.assert_no_pending_responses()
    assert entries(tmp_path)[-1]["result"] == "6379: added, 6380: added"


def test_several_groups_need_group_id(cli, aws_env, monkeypatch):
    ec, stub = stubbed("elasticache")
    _serverless(stub, ["sg-0aaa", "sg-0bbb"])
    ec2, _ = stubbed("ec2")
    _patch(monkeypatch, elasticache=ec, ec2=ec2)
    with stub:
        r = cli("sg", "allow", "--cache", "sv", "--cidr", "10.0.0.0/8")
    assert r.code == 2 and "sg-0aaa, sg-0bbb" in r.err and "--group-id" in r.err


def test_unauthorized_operation_exits_4(cli, aws_env, monkeypatch):
    ec, stub = stubbed("elasticache")
    _serverless(stub, ["sg-0cache"])
    ec2, ec2_stub = stubbed("ec2")
    ec2_stub.add_response("describe_security_group_rules", {"SecurityGroupRules": []})
    ec2_stub.add_client_error(
        "authorize_security_group_ingress",
        service_error_code="UnauthorizedOperation",
        http_status_code=403,
    )
    _patch(monkeypatch, elasticache=ec, ec2=ec2)
    with stub, ec2_stub:
        r = cli("sg", "allow", "--cache", "sv", "--cidr", "10.0.0.0/8", "--port", "6379")
    assert r.code == 4 and "UnauthorizedOperation" in r.err and len(r.err_lines) == 1


def test_a_description_ec2_would_refuse_is_exit_2_before_any_call(cli, moto_world, tmp_path):
    w = moto_world
    r = cli(
        "sg", "allow", "--from-sg", w.app_sg, "--cache", "demo", "--group-id", w.cache_sg,
        "--description", "Jane's laptop",
    )  # fmt: skip
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and "--description" in r.err and "EC2 refuses" in r.err
    assert ingress(w.cache_sg) == [] and entries(tmp_path) == []
