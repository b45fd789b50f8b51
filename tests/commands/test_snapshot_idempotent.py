"""`snapshot create` and `snapshot delete` run twice, as a repeated runbook step runs them:
the state asked for being there already is exit 0 with a note (SPEC, exit codes), and the
audit line says that nothing changed. moto for create and for a missing name; Stubber for
a snapshot already "deleting", which moto never shows (it deletes at once)."""

from __future__ import annotations

import boto3
from helpers import aws as aws_helpers
from helpers.aws import stubbed

from closeup_ops import audit

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def entries(tmp_path):
    return audit.read_entries(tmp_path / "state" / "closeup-ops" / "audit.log")


def _use(monkeypatch, client):
    from closeup_ops.connect import aws

    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: client)


def test_create_twice_is_one_snapshot_and_two_successes(cli, moto_world, monkeypatch, tmp_path):
    ec = boto3.client("elasticache", region_name="us-east-1")
    created = []
    ec.meta.events.register(
        "before-call.elasticache.CreateSnapshot", lambda **kw: created.append(1)
    )
    _use(monkeypatch, ec)
    first = cli("snapshot", "create", "--cache", "demo", "--name", "pre-upgrade", "--json")
    again = cli("snapshot", "create", "--cache", "demo", "--name", "pre-upgrade", "--json")
    assert first.code == 0 and again.code == 0, again.err
    assert created == [1]  # one CreateSnapshot, not two
    assert "already exists, state available" in again.err and "nothing created" in again.err
    # when it was made, so an old snapshot is not taken for a fresh one (moto records no
    # NodeSnapshots[].SnapshotCreateTime, so here it is "?")
    assert f"created {again.json()['created'] or '?'}:" in again.err
    assert again.json()["name"] == "pre-upgrade" and again.json()["status"] == "available"
    assert [e["result"] for e in entries(tmp_path)] == [
        "ok",
        "ok: already exists, state available, nothing changed",
    ]


def _deleting(stub):
    snap = {
        "SnapshotName": "s1",
        "ReplicationGroupId": "demo",
        "SnapshotStatus": "deleting",
        "ARN": "arn:aws:elasticache:us-east-1:123456789012:snapshot:s1",
    }
    stub.add_response("describe_snapshots", {"Snapshots": [snap]}, {"SnapshotName": "s1"})


def test_delete_of_a_snapshot_already_deleting_succeeds(cli, aws_env, monkeypatch, tmp_path):
    ec, stub = stubbed("elasticache")
    _deleting(stub)
    _use(monkeypatch, ec)
    with stub:  # no DeleteSnapshot stubbed: AWS would refuse it (InvalidSnapshotState)
        r = cli("snapshot", "delete", "s1", "--node", "--yes", "--json")
    stub.assert_no_pending_responses()
    assert r.code == 0, r.err
    assert r.json()["status"] == "deleting" and "already deleting" in r.err
    (line,) = entries(tmp_path)
    assert (line["command"], line["target"]) == ("snapshot delete", "s1")
    assert line["result"] == "ok: already deleting, nothing changed"


def test_already_deleting_needs_no_yes_and_is_not_audited(cli, aws_env, monkeypatch, tmp_path):
    ec, stub = stubbed("elasticache")
    _deleting(stub)
    _use(monkeypatch, ec)
    with stub:
        r = cli("snapshot", "delete", "s1", "--node")
    assert r.code == 0, r.err
    assert "already deleting" in r.err and entries(tmp_path) == []


def test_delete_of_a_name_that_does_not_exist(cli, moto_world, tmp_path):
    assert cli("snapshot", "create", "--cache", "demo", "--name", "old").code == 0
    assert cli("snapshot", "delete", "old", "--yes").code == 0
    before = entries(tmp_path)
    # a typo or an earlier run: not told apart, so not a silent success
    r = cli("snapshot", "delete", "old", "--yes")
    assert r.code == 5 and "not found" in r.err and "--missing-ok" in r.err
    assert len(r.err_lines) == 1 and entries(tmp_path) == before  # nothing attempted
    # a runbook that may run the step again says that absent is fine
    r = cli("snapshot", "delete", "old", "--yes", "--missing-ok", "--json")
    assert r.code == 0, r.err
    assert r.json()["name"] == "old" and r.json()["status"] == "not found"
    assert "nothing to delete" in r.err
    assert entries(tmp_path)[-1]["result"] == "ok: not found, nothing changed"
    assert len(entries(tmp_path)) == len(before) + 1
