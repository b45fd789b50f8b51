"""`closeup-ops snapshot create|list|restore|delete` driven as a user would (moto + Stubber)."""

from __future__ import annotations

import re

from helpers import aws as aws_helpers
from helpers.aws import not_found, stubbed

from closeup_ops import audit

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def errors_of(r) -> list[str]:
    return [line for line in r.err_lines if line.startswith("closeup-ops: error:")]


def entries(tmp_path):
    return audit.read_entries(tmp_path / "state" / "closeup-ops" / "audit.log")


def test_create_default_name_list_and_audit(cli, moto_world, tmp_path):
    r = cli("snapshot", "create", "--cache", "demo", "--json")
    assert r.code == 0, r.err
    snap = r.json()
    assert re.fullmatch(r"demo-\d{8}-\d{4}", snap["name"])
    assert snap["kind"] == "replication-group" and snap["status"] == "available"
    r = cli("snapshot", "create", "--cache", "single", "--name", "single-1", "--wait", "--json")
    assert r.code == 0, r.err
    assert r.json()["kind"] == "cache-cluster"
    r = cli("snapshot", "list", "--json")
    assert {s["name"] for s in r.json()} == {snap["name"], "single-1"}
    r = cli("snapshot", "list", "--cache", "single", "--json")
    assert [s["name"] for s in r.json()] == ["single-1"]
    r = cli("snapshot", "list")
    assert r.code == 0 and "single-1" in r.out and "cache-cluster" in r.out
    lines = entries(tmp_path)
    assert [(e["command"], e["target"], e["result"]) for e in lines] == [
        ("snapshot create", "demo", "ok"),
        ("snapshot create", "single", "ok"),
    ]
    assert lines[0]["snapshot"] == snap["name"] and lines[0]["user"] and lines[0]["host"]


def test_create_a_name_another_cache_has_exits_5_and_is_audited(cli, moto_world, tmp_path):
    assert cli("snapshot", "create", "--cache", "demo", "--name", "dup").code == 0
    r = cli("snapshot", "create", "--cache", "single", "--name", "dup")
    assert r.code == 5 and len(errors_of(r)) == 1
    assert "already exists" in r.err and "of replication-group demo" in r.err
    assert "--name" in r.err  # what to do next
    assert entries(tmp_path)[-1]["result"].startswith("error: ")


def test_restore_new_and_existing_target(cli, moto_world, tmp_path):
    assert cli("snapshot", "create", "--cache", "demo", "--name", "s1").code == 0
    r = cli("snapshot", "restore", "s1", "--target", "demo-copy", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["kind"] == "replication-group" and doc["copied_from"] == "demo"
    assert doc["request"]["CacheNodeType"] == "cache.t4g.small"
    r = cli("caches", "--json")
    assert "demo-copy" in {c["name"] for c in r.json()}
    before = len(entries(tmp_path))
    r = cli("snapshot", "restore", "s1", "--target", "single")
    assert r.code == 5 and "already exists" in r.err and len(errors_of(r)) == 1
    assert len(entries(tmp_path)) == before  # nothing was attempted
    r = cli("snapshot", "restore", "s1", "--target", "demo")
    assert r.code == 2 and "NEW" in r.err
    r = cli("snapshot", "restore", "missing", "--target", "x")
    assert r.code == 5 and "not found" in r.err
    assert entries(tmp_path)[-1]["command"] == "snapshot restore"


def test_restore_wait_reports_endpoints(cli, moto_world):
    assert cli("snapshot", "create", "--cache", "single", "--name", "s2").code == 0
    r = cli("snapshot", "restore", "s2", "--target", "single-2", "--wait", "--timeout", "60")
    assert r.code == 0, r.err
    assert "single-2" in r.out and "available" in r.out


def test_delete_needs_yes(cli, moto_world, tmp_path):
    assert cli("snapshot", "create", "--cache", "demo", "--name", "old").code == 0
    r = cli("snapshot", "delete", "old")
    assert r.code == 2
    assert "would delete replication-group snapshot old of demo" in r.err
    assert "--yes" in r.err_lines[-1]
    assert [s["name"] for s in cli("snapshot", "list", "--json").json()] == ["old"]
    r = cli("snapshot", "delete", "old", "--yes", "--json")
    assert r.code == 0, r.err
    assert cli("snapshot", "list", "--json").json() == []
    assert entries(tmp_path)[-1]["command"] == "snapshot delete"
    r = cli("snapshot", "delete", "old", "--yes")
    assert r.code == 5 and "not found" in r.err


def test_bad_timeout_is_a_usage_error(cli, moto_world):
    r = cli("snapshot", "create", "--cache", "demo", "--timeout", "0")
    assert r.code == 2 and "--timeout" in r.err


def _patch(monkeypatch, client):
    from closeup_ops.connect import aws

    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: client)


def _snap(status):
    return {
        "ServerlessCacheSnapshotName": "s1",
        "Status": status,
        "ARN": "arn:aws:elasticache:us-east-1:123456789012:serverlesscachesnapshot:s1",
        "ServerlessCacheConfiguration": {"ServerlessCacheName": "sv", "Engine": "valkey"},
    }


def _serverless_create(stub):
    from helpers.aws import serverless_desc

    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [serverless_desc("sv")]},
        {"ServerlessCacheName": "sv"},
    )
    _no_snapshot_yet(stub)
    stub.add_response(
        "create_serverless_cache_snapshot",
        {"ServerlessCacheSnapshot": _snap("creating")},
        {"ServerlessCacheSnapshotName": "s1", "ServerlessCacheName": "sv"},
    )


def _no_snapshot_yet(stub):
    """create looks for the name first (the serverless namespace: the cache is serverless)."""
    not_found(
        stub,
        "describe_serverless_cache_snapshots",
        "ServerlessCacheSnapshotNotFoundFault",
        {"ServerlessCacheSnapshotName": "s1"},
    )


def _poll(stub, status):
    # the wait knows the snapshot is serverless: one Describe call per poll
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [_snap(status)]},
        {"ServerlessCacheSnapshotName": "s1"},
    )


def test_serverless_create_wait_available(cli, aws_env, monkeypatch, tmp_path):
    from closeup_ops.ops.aws import snapshots

    monkeypatch.setattr(snapshots.time, "sleep", lambda s: None)
    ec, stub = stubbed("elasticache")
    _serverless_create(stub)
    _poll(stub, "creating")
    _poll(stub, "available")
    _patch(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "create", "--cache", "sv", "--name", "s1", "--wait", "--json")
    assert r.code == 0, r.err
    assert r.json()["status"] == "available" and r.json()["kind"] == "serverless"
    assert "snapshot s1: creating" in r.err and "snapshot s1: available" in r.err
    assert entries(tmp_path)[-1]["kind"] == "serverless"


def test_serverless_create_wait_failed_exits_5(cli, aws_env, monkeypatch):
    from closeup_ops.ops.aws import snapshots

    monkeypatch.setattr(snapshots.time, "sleep", lambda s: None)
    ec, stub = stubbed("elasticache")
    _serverless_create(stub)
    _poll(stub, "failed")
    _patch(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "create", "--cache", "sv", "--name", "s1", "--wait")
    assert r.code == 5 and "snapshot 's1' failed" in r.err_lines[-1]


def test_quota_exceeded_exits_5(cli, aws_env, monkeypatch):
    from helpers.aws import serverless_desc

    ec, stub = stubbed("elasticache")
    stub.add_response(
        "describe_serverless_caches",
        {"ServerlessCaches": [serverless_desc("sv")]},
        {"ServerlessCacheName": "sv"},
    )
    _no_snapshot_yet(stub)
    stub.add_client_error(
        "create_serverless_cache_snapshot",
        service_error_code="ServerlessCacheSnapshotQuotaExceededFault",
        http_status_code=400,
    )
    _patch(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "create", "--cache", "sv", "--name", "s1")
    assert r.code == 5 and "quota" in r.err.lower()


def _both_named_s1(stub) -> None:
    """A node snapshot and a serverless snapshot both called s1 (separate namespaces)."""
    node = {
        "SnapshotName": "s1",
        "ReplicationGroupId": "demo",
        "SnapshotStatus": "available",
        "ARN": "arn:aws:elasticache:us-east-1:123456789012:snapshot:s1",
    }
    stub.add_response("describe_snapshots", {"Snapshots": [node]}, {"SnapshotName": "s1"})
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [_snap("available")]},
        {"ServerlessCacheSnapshotName": "s1"},
    )


def test_delete_refuses_a_name_both_kinds_share(cli, aws_env, monkeypatch, tmp_path):
    ec, stub = stubbed("elasticache")
    _both_named_s1(stub)
    _patch(monkeypatch, ec)
    with stub:  # no Delete* call is stubbed: one would fail the test
        r = cli("snapshot", "delete", "s1", "--yes")
    stub.assert_no_pending_responses()
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and "--serverless" in r.err and "--node" in r.err
    assert "of demo" in r.err and "of sv" in r.err
    assert entries(tmp_path) == []


def test_delete_the_serverless_one_when_asked(cli, aws_env, monkeypatch, tmp_path):
    ec, stub = stubbed("elasticache")
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [_snap("available")]},
        {"ServerlessCacheSnapshotName": "s1"},
    )
    stub.add_response(
        "delete_serverless_cache_snapshot",
        {"ServerlessCacheSnapshot": _snap("deleting")},
        {"ServerlessCacheSnapshotName": "s1"},
    )
    _patch(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "delete", "s1", "--serverless", "--yes", "--json")
    stub.assert_no_pending_responses()
    assert r.code == 0, r.err
    assert r.json()["kind"] == "serverless" and entries(tmp_path)[-1]["kind"] == "serverless"


def test_delete_the_node_one_when_asked(cli, aws_env, monkeypatch):
    ec, stub = stubbed("elasticache")
    node = {"SnapshotName": "s1", "ReplicationGroupId": "demo", "SnapshotStatus": "available"}
    stub.add_response("describe_snapshots", {"Snapshots": [node]}, {"SnapshotName": "s1"})
    stub.add_response(
        "delete_snapshot",
        {"Snapshot": dict(node, SnapshotStatus="deleting")},
        {"SnapshotName": "s1"},
    )
    _patch(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "delete", "s1", "--node", "--yes", "--json")
    stub.assert_no_pending_responses()
    assert r.code == 0, r.err and r.json()["kind"] == "replication-group"
