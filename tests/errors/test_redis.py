"""Redis failures -> SPEC's exit codes, produced by real servers."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from closeup_ops.errors import classify
from closeup_ops.local.cluster import start_cluster


@pytest.fixture(scope="module")
def locked_cluster(tmp_path_factory):
    """A 3-primary cluster that requires a password (set after the cluster formed)."""
    cluster = start_cluster(tmp_path_factory.mktemp("locked"), 3, 0)
    for node in cluster.nodes:
        redis.Redis(host=node.host, port=node.port).config_set("requirepass", "pw-4-locked")
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_cluster_without_password_is_an_auth_error(locked_cluster, protocol):
    # SPEC: NOAUTH is exit 4, also when redis-py's cluster client wraps it (RESP2: AUTH
    # required; RESP3: HELLO refused before authentication)
    entry = locked_cluster.nodes[0]
    with pytest.raises(Exception) as caught:  # noqa: B017 (RedisClusterException is no RedisError)
        RedisCluster(host=entry.host, port=entry.port, protocol=protocol).ping()
    err = classify(caught.value, f"{entry.host}:{entry.port}")
    assert err.exit_code == 4, err.line()
    assert "REDIS_PASSWORD" in err.line()


def test_cluster_with_a_wrong_password_is_an_auth_error(locked_cluster):
    entry = locked_cluster.nodes[0]
    with pytest.raises(Exception) as caught:  # noqa: B017 (RedisClusterException is no RedisError)
        RedisCluster(host=entry.host, port=entry.port, password="nope").ping()
    err = classify(caught.value, f"{entry.host}:{entry.port}")
    assert err.exit_code == 4 and "pw-4-locked" not in err.line()
