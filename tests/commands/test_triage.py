"""`closeup-ops triage` as a whole: read-only (checked on the server), what a serverless-like
engine refuses is said per part, a paused server makes every part "unavailable" instead of
hanging, the Markdown report, bad flags, and the AWS side (CloudWatch in moto; events and
update actions through a Stubber, which moto lacks)."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest
import redis
from botocore.stub import ANY
from helpers import aws as aws_helpers
from helpers.aws import REGION, stubbed
from helpers.common import server_env
from helpers.triage import findings, triage

from closeup_ops.local.servers import redis_cli, start_redis

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world

SL_USER, SL_PASSWORD = "serverless-like", "sl-Pass-word-61"
# What this emulation refuses, as the issue lists for serverless: SLOWLOG, CLIENT LIST,
# LATENCY, INFO commandstats. ACL cannot refuse one INFO section, so INFO is allowed only
# with the sections named (first-argument rules): a bare INFO and INFO commandstats fail.
SERVERLESS_LIKE_ACL = [
    "on", f">{SL_PASSWORD}", "~*", "&*", "+@all", "-slowlog", "-client|list", "-latency",
    "-info", "+info|server", "+info|clients", "+info|memory", "+info|stats",
    "+info|replication", "+info|cpu", "+info|keyspace", "+info|errorstats", "+info|cluster",
]  # fmt: skip


@pytest.fixture
def server(tmp_path):
    s = start_redis(tmp_path / "s", "--enable-debug-command", "yes")
    c = redis.Redis(host=s.host, port=s.port)
    for i in range(300):
        c.set(f"order:{i}", "o" * 50, ex=3600)
    c.execute_command("DEBUG", "SLEEP", "0.02")  # one slow log entry
    c.close()
    yield s
    s.stop()


def _stats(s) -> dict[str, int]:
    out = {}
    for line in redis_cli(s, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            out[name.removeprefix("cmdstat_")] = int(rest.split(",")[0].split("=")[1])
    return out


def test_triage_issues_no_write_command(cli, server):
    writes = set(redis_cli(server, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "write").split())
    assert "set" in writes  # the oracle itself
    dirty = int(
        redis_cli(server, "INFO", "persistence").split("rdb_changes_since_last_save:")[1].split()[0]
    )
    before = _stats(server)
    r, doc = triage(cli, server, "--samples", "500")
    after = _stats(server)
    assert r.code == 0, r.err
    used = {name for name, calls in after.items() if calls > before.get(name, 0)}
    assert {"slowlog|get", "client|list", "memory|usage", "pttl", "randomkey"} <= used
    assert used & writes == set()
    dirty_after = int(
        redis_cli(server, "INFO", "persistence").split("rdb_changes_since_last_save:")[1].split()[0]
    )
    assert dirty_after == dirty  # not one key changed


def test_serverless_like_engine_refusals_are_said_per_part(cli, server):
    redis_cli(server, "ACL", "SETUSER", SL_USER, *SERVERLESS_LIKE_ACL)
    env = {"REDIS_USERNAME": SL_USER, "REDIS_PASSWORD": SL_PASSWORD}
    r, doc = triage(cli, server, env=env)
    assert r.code == 0, r.err
    parts = {p["name"]: p for p in doc["parts"]}
    for name, command in (("slowlog", "slowlog|get"), ("clients", "client|list")):
        assert not parts[name]["ok"]
        assert "refused by the server" in parts[name]["why"] and command in parts[name]["why"]
    assert parts["nodes"]["ok"] and parts["keys"]["ok"]
    node = doc["nodes"][0]
    assert node["keys"] == 300 and node["commands"] is None
    assert "INFO commandstats unavailable" in node["commands_note"]
    assert SL_PASSWORD not in r.out + r.err
    human = cli("triage", "--no-aws", "--interval", "0.5", env={**server_env(server), **env})
    lines = human.out.splitlines()
    for name in ("slowlog", "clients"):
        (line,) = [x for x in lines if x.startswith(f"- {name}: unavailable: ")]
        assert "refused by the server" in line


def test_a_paused_server_makes_parts_unavailable_not_a_hang(server, tmp_path, monkeypatch):
    from closeup_ops.connect.redis import connect
    from closeup_ops.ops.thresholds import Thresholds
    from closeup_ops.ops.triage.run import triage as run
    from closeup_ops.settings import load

    monkeypatch.chdir(tmp_path)
    settings = load({"host": server.host, "port": str(server.port), "timeout": "1"}, environ={})
    target = connect(settings)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        report = run(target, interval=0.5, since_s=3600, samples=10, full=False,
                     limits=Thresholds(), aws=False)  # fmt: skip
    finally:
        os.kill(server.pid, signal.SIGCONT)
        target.close()
    parts = {p.name: p for p in report.parts}
    for name in ("nodes", "slowlog", "clients", "keys"):
        assert not parts[name].ok, name
        assert "no answer within" in parts[name].why, parts[name].why
    # keys waits for nodes (two 1 s read timeouts and the 0.5 s interval) and then times out
    # itself: it cannot be done by the budget (interval + timeout + 1), and is cut off there
    assert parts["keys"].why == "no answer within 2.5 s"
    assert report.findings == []


def test_markdown_file_is_the_report(cli, server, tmp_path):
    target = tmp_path / "incident.md"
    r = cli("triage", "--no-aws", "--interval", "0.5", "--markdown", str(target),
            env=server_env(server))  # fmt: skip
    assert r.code == 0, r.err
    text = target.read_text()
    assert text.startswith(f"# Triage of {server.host}:{server.port}")
    assert r.out == text
    for heading in ("## Findings", "## Nodes", "## Slow log", "## Clients", "## Keys"):
        assert heading in text
    assert "1. **WARNING** `slow-commands`" in text  # the DEBUG SLEEP of the fixture


@pytest.mark.parametrize(
    "args",
    [
        ["--interval", "0.1"],
        ["--interval", "61"],
        ["--samples", "0"],
        ["--since", "2x"],
        ["--min-hit-rate", "101"],
        ["--markdown", "/nonexistent-dir/x.md"],
        ["--markdown", "/tmp"],
    ],
)
def test_bad_flags_exit_2_in_one_line(cli, args):
    r = cli("triage", *args)
    assert r.code == 2 and len(r.err_lines) == 1, r.err


def test_unreachable_cache_exits_3(cli):
    from closeup_ops.local.servers import free_port

    r = cli("triage", "--no-aws", env={"REDIS_PORT": str(free_port()), "REDIS_TIMEOUT": "1"})
    assert r.code == 3 and len(r.err_lines) == 1


# --- AWS: CloudWatch (moto) and events / update actions (Stubber) -----------------------------


class Mixed:
    STUBBED = {"describe_events", "describe_update_actions"}

    def __init__(self, moto_client, stub_client):
        self._moto, self._stub = moto_client, stub_client

    def __getattr__(self, name):
        return getattr(self._stub if name in self.STUBBED else self._moto, name)


def _aws(monkeypatch, events, updates, cpu):
    import boto3

    from closeup_ops.connect import aws

    ec = boto3.client("elasticache", region_name=REGION)
    members = ec.describe_replication_groups(ReplicationGroupId="demo")["ReplicationGroups"][0][
        "MemberClusters"
    ]
    cw = boto3.client("cloudwatch", region_name=REGION)
    now = dt.datetime.now(dt.timezone.utc)
    cw.put_metric_data(
        Namespace="AWS/ElastiCache",
        MetricData=[
            {
                "MetricName": "EngineCPUUtilization",
                "Dimensions": [
                    {"Name": "CacheClusterId", "Value": members[0]},
                    {"Name": "CacheNodeId", "Value": "0001"},
                ],
                "Timestamp": now - dt.timedelta(minutes=5 * (i + 1)),
                "Value": v,
            }
            for i, v in enumerate(cpu)
        ],
    )
    ec_stub, stub = stubbed("elasticache")
    for source_type, ident in [("replication-group", "demo")] + [
        ("cache-cluster", m) for m in members
    ]:
        stub.add_response(
            "describe_events",
            {"Events": [dict(e, Date=now - dt.timedelta(minutes=10)) for e in events
                        if e["SourceIdentifier"] == ident]},
            {"SourceIdentifier": ident, "SourceType": source_type, "StartTime": ANY,
             "EndTime": ANY, "MaxRecords": 100},
        )  # fmt: skip
    stub.add_response(
        "describe_update_actions",
        {"UpdateActions": updates},
        {"ReplicationGroupIds": ["demo"], "UpdateActionStatus": ANY, "MaxRecords": 100},
    )
    clients = {"elasticache": Mixed(ec, ec_stub), "cloudwatch": cw}
    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: clients[service])
    return stub


def _run_aws(cli, server):
    env = {**server_env(server), "AWS_REGION": REGION}
    return cli("triage", "--json", "--interval", "0.5", "--cache", "demo", env=env)


def test_aws_failover_update_and_cpu_findings(cli, server, moto_world, monkeypatch):
    stub = _aws(
        monkeypatch,
        [{"SourceIdentifier": "demo", "SourceType": "replication-group",
          "Message": "Failover to replica node demo-002 completed"}],
        [{"ReplicationGroupId": "demo", "ServiceUpdateName": "elasticache-20260101-001",
          "ServiceUpdateSeverity": "critical", "UpdateActionStatus": "not-applied"}],
        cpu=[40.0, 88.0, 30.0],
    )  # fmt: skip
    with stub:
        r = _run_aws(cli, server)
    assert r.code == 0, r.err
    doc = r.json()
    found = findings(doc)
    assert "Failover to replica node demo-002" in found["aws-event"]["evidence"][0]
    assert "elasticache-20260101-001" in found["service-update"]["evidence"][0]
    assert "peak 88.0%" in found["cloudwatch-cpu"]["evidence"][0]
    assert doc["aws"]["cloudwatch"]["metrics"]["EngineCPUUtilization"]["peak"] == 88.0


def test_aws_quiet_cache_has_no_aws_findings(cli, server, moto_world, monkeypatch):
    stub = _aws(
        monkeypatch,
        [{"SourceIdentifier": "demo", "SourceType": "replication-group",
          "Message": "Snapshot succeeded for snapshot with ID 'demo-x'"}],
        [{"ReplicationGroupId": "demo", "ServiceUpdateName": "elasticache-20260101-002",
          "ServiceUpdateSeverity": "low", "UpdateActionStatus": "not-applied"}],
        cpu=[20.0, 25.0],
    )  # fmt: skip
    with stub:
        r = _run_aws(cli, server)
    doc = r.json()
    ids = set(findings(doc))
    assert ids.isdisjoint({"aws-event", "service-update", "cloudwatch-cpu"}), ids
    assert doc["aws"]["events"]["events"][0]["kind"] == "snapshot"


def test_full_looks_at_every_key_once(cli, server):
    c = redis.Redis(host=server.host, port=server.port)
    pipe = c.pipeline(transaction=False)
    for i in range(5000):  # more than one SCAN call's worth
        pipe.set(f"line:{i}", "l")
    pipe.execute()
    r, doc = triage(cli, server, "--full")
    c.delete(*[f"line:{i}" for i in range(5000)])
    assert r.code == 0, r.err
    keys = doc["keys"]
    assert keys["mode"] == "full" and keys["sampled"] == 5300  # and the fixture's 300
    counts = {n["namespace"]: (n["sampled_keys"], n["ttl_share"]) for n in keys["namespaces"]}
    assert counts == {"order:": (300, 1.0), "line:": (5000, 0.0)}
    r, doc = triage(cli, server, "--samples", "50")
    assert doc["keys"]["mode"] == "sample" and 0 < doc["keys"]["sampled"] <= 50


def test_via_bastion_every_part_goes_through_the_tunnel(cli, server, sshd):
    from helpers.bastion import bastion_env

    r, doc = triage(cli, server, "--via-bastion", env=bastion_env(sshd))
    assert r.code == 0, r.err
    assert all(p["ok"] for p in doc["parts"] if p["name"] != "aws"), doc["parts"]
    assert doc["nodes"][0]["keys"] == 300 and doc["keys"]["sampled"] > 0
    # named by the endpoint asked for, not by the tunnel's local end
    assert doc["endpoint"] == doc["nodes"][0]["address"] == f"{server.host}:{server.port}"
    assert doc["clients"]["own"] >= 1  # our connections arrived (through sshd)


def test_over_tls(cli, redis_tls, tls_files):
    r, doc = triage(cli, redis_tls, env={"REDIS_TLS": "true", "REDIS_CA_CERT": str(tls_files.ca)})
    assert r.code == 0, r.err
    assert all(p["ok"] for p in doc["parts"] if p["name"] != "aws"), doc["parts"]
