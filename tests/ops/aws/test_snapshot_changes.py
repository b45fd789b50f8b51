"""Create and delete that succeed when the snapshot is already in the state asked for.

moto for what it models (a snapshot is "available" at once, DeleteSnapshot removes it at
once); Stubber, which checks every request and answer against the API model, for the
states moto never shows ("creating", "deleting", "failed") and for AWS's own refusals:
DeleteSnapshot of a snapshot that is already deleting is InvalidSnapshotState (service
model: InvalidSnapshotStateFault, "The current state of the snapshot does not allow the
requested operation to occur"); SnapshotStatus is "creating | available | restoring |
copying | deleting"."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers import aws as aws_helpers
from helpers.aws import not_found, serverless_desc, stubbed

from closeup_ops.connect import aws, cache_ref
from closeup_ops.errors import AwsResourceError, classify
from closeup_ops.ops.aws import snapshot_changes as changes
from closeup_ops.ops.aws import snapshots as ops
from closeup_ops.settings import Settings

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world

GROUP = cache_ref.CacheRef(cache_ref.REPLICATION_GROUP, "demo")


def _calls(ec, operation: str) -> list[dict]:
    seen: list[dict] = []
    ec.meta.events.register(
        f"before-call.elasticache.{operation}", lambda params, **kw: seen.append(params)
    )
    return seen


def test_create_of_an_existing_name_of_the_same_cache_sends_nothing(moto_world):
    ec = boto3.client("elasticache", region_name="us-east-1")
    group = aws.find_cache(Settings(cache="demo"), ec)
    created = _calls(ec, "CreateSnapshot")
    first = changes.ensure_snapshot(ec, group, "nightly")
    again = changes.ensure_snapshot(ec, group, "nightly")
    assert len(created) == 1  # the second run found it and sent no CreateSnapshot
    assert first.already is None and first.audit_result() == "ok"
    assert again.already == "already exists, state available"
    assert again.snapshot.name == "nightly" and again.snapshot.cache == "demo"
    assert again.audit_result().startswith("ok: already exists")


def test_the_same_name_of_another_cache_exits_5_with_what_to_do(moto_world):
    ec = boto3.client("elasticache", region_name="us-east-1")
    changes.ensure_snapshot(ec, aws.find_cache(Settings(cache="demo"), ec), "nightly")
    created = _calls(ec, "CreateSnapshot")
    with pytest.raises(AwsResourceError) as err:
        changes.ensure_snapshot(ec, aws.find_cache(Settings(cache="single"), ec), "nightly")
    assert err.value.exit_code == 5 and created == []
    assert "of replication-group demo" in err.value.line() and "--name" in err.value.line()


def _node(status: str, **more) -> dict:
    return {"SnapshotName": "s1", "ReplicationGroupId": "demo", "SnapshotStatus": status, **more}


def _found(stub, status: str, **more) -> None:
    stub.add_response(
        "describe_snapshots", {"Snapshots": [_node(status, **more)]}, {"SnapshotName": "s1"}
    )


@pytest.mark.parametrize("status", ["creating", "available", "restoring", "copying"])
def test_a_snapshot_being_made_or_made_is_there_already(status):
    ec, stub = stubbed("elasticache")
    _found(stub, status)
    with stub:  # no CreateSnapshot stubbed: sending one would fail the test
        done = changes.ensure_snapshot(ec, GROUP, "s1")
    stub.assert_no_pending_responses()
    assert done.already == f"already exists, state {status}" and done.snapshot.status == status


@pytest.mark.parametrize(("status", "hint"), [("deleting", "wait"), ("failed", "delete it")])
def test_a_snapshot_of_this_cache_that_cannot_become_available_exits_5(status, hint):
    ec, stub = stubbed("elasticache")
    _found(stub, status)
    with stub, pytest.raises(AwsResourceError) as err:
        changes.ensure_snapshot(ec, GROUP, "s1")
    assert err.value.exit_code == 5
    assert status in err.value.line() and hint in err.value.line()


def test_a_member_clusters_snapshot_names_the_cluster_it_was_taken_of():
    ec, stub = stubbed("elasticache")
    _found(stub, "available", CacheClusterId="demo-002")
    member = cache_ref.CacheRef(cache_ref.CACHE_CLUSTER, "demo-002")
    with stub:
        assert changes.ensure_snapshot(ec, member, "s1").already


def test_a_name_taken_between_the_look_and_the_call_is_looked_at_again():
    ec, stub = stubbed("elasticache")
    not_found(stub, "describe_snapshots", "SnapshotNotFoundFault", {"SnapshotName": "s1"})
    stub.add_client_error(
        "create_snapshot",
        service_error_code="SnapshotAlreadyExistsFault",
        http_status_code=400,
        expected_params={"SnapshotName": "s1", "ReplicationGroupId": "demo"},
    )
    _found(stub, "creating")
    with stub:
        done = changes.ensure_snapshot(ec, GROUP, "s1")
    stub.assert_no_pending_responses()
    assert done.already == "already exists, state creating"


def test_serverless_create_looks_in_the_serverless_namespace():
    ec, stub = stubbed("elasticache")
    snap = {
        "ServerlessCacheSnapshotName": "s1",
        "Status": "available",
        "ServerlessCacheConfiguration": {"ServerlessCacheName": "demo"},
    }
    stub.add_response(
        "describe_serverless_cache_snapshots",
        {"ServerlessCacheSnapshots": [snap]},
        {"ServerlessCacheSnapshotName": "s1"},
    )
    with stub:
        done = changes.ensure_snapshot(ec, cache_ref.serverless_ref(serverless_desc()), "s1")
    stub.assert_no_pending_responses()
    assert done.already == "already exists, state available"


# --- delete --------------------------------------------------------------------------------


def test_delete_of_a_snapshot_already_deleting_sends_nothing():
    ec, stub = stubbed("elasticache")
    snap = ops.from_node_snapshot(_node("deleting"))
    with stub:  # no DeleteSnapshot stubbed: AWS would answer it with InvalidSnapshotState
        done = changes.remove_snapshot(ec, snap)
    assert done.already == "already deleting" and done.snapshot.status == "deleting"


def test_delete_refused_because_it_started_deleting_meanwhile_is_success():
    ec, stub = stubbed("elasticache")
    stub.add_client_error(
        "delete_snapshot",
        service_error_code="InvalidSnapshotState",
        http_status_code=400,
        expected_params={"SnapshotName": "s1"},
    )
    _found(stub, "deleting")
    with stub:
        done = changes.remove_snapshot(ec, ops.from_node_snapshot(_node("available")))
    stub.assert_no_pending_responses()
    assert done.already == "already deleting"


def test_delete_refused_for_another_state_still_exits_5():
    ec, stub = stubbed("elasticache")
    stub.add_client_error(
        "delete_snapshot",
        service_error_code="InvalidSnapshotState",
        http_status_code=400,
        expected_params={"SnapshotName": "s1"},
    )
    _found(stub, "creating")  # AWS will not delete a snapshot it is still making
    with stub, pytest.raises(ClientError) as err:
        changes.remove_snapshot(ec, ops.from_node_snapshot(_node("creating")))
    stub.assert_no_pending_responses()
    assert classify(err.value).exit_code == 5 and "InvalidSnapshotState" in str(err.value)


def test_delete_of_a_snapshot_gone_since_it_was_found_is_success():
    ec, stub = stubbed("elasticache")
    not_found(stub, "delete_snapshot", "SnapshotNotFoundFault", {"SnapshotName": "s1"})
    with stub:
        done = changes.remove_snapshot(ec, ops.from_node_snapshot(_node("available")))
    assert done.already == "already deleted" and done.snapshot.status == "deleted"


def test_delete_sends_one_delete_and_says_nothing_was_already(moto_world):
    ec = boto3.client("elasticache", region_name="us-east-1")
    snap = ops.create_snapshot(ec, aws.find_cache(Settings(cache="demo"), ec), "old")
    done = changes.remove_snapshot(ec, snap)
    assert done.already is None and done.audit_result() == "ok"
    assert ops.find_snapshot(ec, "old") is None
