"""AWS error mapping: a request the tool built and AWS refused is the tool's fault (exit 1,
with what was sent, secrets masked), not the user's."""

from __future__ import annotations

import pytest
from helpers.aws import stubbed

from closeup_ops import errors
from closeup_ops.connect.aws import remember_requests
from closeup_ops.errors.types import EXIT_INTERNAL, EXIT_USAGE


@pytest.fixture(autouse=True)
def _fresh_context():
    errors.CONTEXT.clear()
    yield
    errors.CONTEXT.clear()


def test_invalid_parameter_combination_is_the_tools_fault_with_the_request():
    ec, stub = stubbed("elasticache")
    remember_requests(ec)
    request = {
        "ReplicationGroupId": "demo-copy",
        "ReplicationGroupDescription": "copy",
        "NumNodeGroups": 3,
        "AuthToken": "token-Value-1234567890",
    }
    stub.add_client_error(
        "create_replication_group",
        service_error_code="InvalidParameterCombination",
        service_message="Cluster mode requires automatic failover",
        http_status_code=400,
        expected_params=request,
    )
    with stub, pytest.raises(Exception) as caught:
        ec.create_replication_group(**request)
    mapped = errors.classify(caught.value)
    assert mapped.exit_code == EXIT_INTERNAL
    line = mapped.line()
    assert "CreateReplicationGroup" in line and "InvalidParameterCombination" in line
    assert '"NumNodeGroups":3' in line and '"ReplicationGroupId":"demo-copy"' in line
    assert "token-Value-1234567890" not in line and '"AuthToken":"******"' in line
    assert "bug" in line and "check the values passed" not in line


def test_invalid_parameter_value_stays_a_usage_error():
    ec, stub = stubbed("elasticache")
    remember_requests(ec)
    stub.add_client_error(
        "describe_snapshots",
        service_error_code="InvalidParameterValue",
        service_message="bad name",
        http_status_code=400,
    )
    with stub, pytest.raises(Exception) as caught:
        ec.describe_snapshots(SnapshotName="x")
    assert errors.classify(caught.value).exit_code == EXIT_USAGE
