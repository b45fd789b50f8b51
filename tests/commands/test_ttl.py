"""`ttl` against real servers: named keys, a pattern's histogram, --expect-max (exit 6),
the same answers on standalone and cluster, and bad input (exit 2)."""

from __future__ import annotations

import pytest
from helpers.common import server_env
from helpers.keyspace import OTP, USERS, VIDEO, seed, unique_prefix


@pytest.fixture(params=["standalone", "cluster"])
def target(request, redis_plain, redis_cluster):
    server = redis_plain if request.param == "standalone" else redis_cluster
    entry = server if request.param == "standalone" else server.entry
    data = seed(server)
    yield request.param, server_env(entry), data
    data.cleanup()


def test_ttl_of_named_keys(cli, target):
    mode, env, data = target
    p = data.prefix
    r = cli("ttl", f"{p}:otp:1", f"{p}:user:verified:2", f"{p}:missing", "--json", env=env)
    assert r.code == 0, r.err
    rows = {k["key"]: k for k in r.json()["keys"]}
    assert 290 <= rows[f"{p}:otp:1"]["ttl"] <= 300
    assert 290_000 <= rows[f"{p}:otp:1"]["ttl_ms"] <= 300_000
    assert rows[f"{p}:user:verified:2"]["ttl"] == -1
    assert rows[f"{p}:missing"]["ttl"] == -2


def test_ttl_named_keys_human(cli, target):
    mode, env, data = target
    p = data.prefix
    r = cli("ttl", f"{p}:user:verified:2", f"{p}:missing", env=env)
    assert r.code == 0, r.err
    assert "-1 (no expiry)" in r.out and "-2 (missing)" in r.out


def test_ttl_named_keys_expect_max(cli, target):
    mode, env, data = target
    p = data.prefix
    r = cli("ttl", f"{p}:otp:1", "--expect-max", "300", env=env)
    assert r.code == 0, r.err
    r = cli("ttl", f"{p}:otp:1", f"{p}:user:verified:1", "--expect-max", "300", env=env)
    assert r.code == 6
    assert f"{p}:user:verified:1" in r.err and len(r.err_lines) == 1


def test_pattern_histogram(cli, target):
    mode, env, data = target
    r = cli("ttl", "--pattern", data.pattern, "--json", env=env)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["keys"] == OTP + VIDEO + USERS
    assert doc["no_expiry"] == USERS and doc["with_ttl"] == OTP + VIDEO
    buckets = {b["label"]: b["count"] for b in doc["histogram"]}
    assert buckets["no expiry"] == USERS
    assert buckets["1m-5m"] == OTP  # TTL 300
    assert buckets["5m-30m"] == VIDEO  # TTL 1800
    assert sum(buckets.values()) == doc["keys"]
    assert len(doc["no_expiry_sample"]) == 10
    assert all(k.startswith(f"{data.prefix}:user:verified:") for k in doc["no_expiry_sample"])
    assert doc["ok"] is True and doc["expect_max"] is None


def test_pattern_human(cli, target):
    mode, env, data = target
    r = cli("ttl", "--pattern", data.pattern, env=env)
    assert r.code == 0, r.err
    assert f"{OTP + VIDEO + USERS} keys matching" in r.out
    assert "keys without expiry (sample of 10):" in r.out
    assert "no expiry" in r.out and "#" in r.out


def test_expect_max_passes_for_otp_keys(cli, target):
    """The guide's OTP keys must live <= 300 s."""
    mode, env, data = target
    r = cli("ttl", "--pattern", f"{data.prefix}:otp:*", "--expect-max", "300", env=env)
    assert r.code == 0, r.err
    assert "every key expires within 300 s" in r.out


def test_expect_max_fails_on_no_expiry_and_long_ttl(cli, target):
    mode, env, data = target
    r = cli("ttl", "--pattern", data.pattern, "--expect-max", "300", "--json", env=env)
    assert r.code == 6
    doc = r.json()
    assert doc["ok"] is False
    assert doc["no_expiry"] == USERS and doc["above_max"] == VIDEO
    assert all(k["ttl"] > 300 for k in doc["above_max_sample"])
    assert f"{USERS} have no expiry and {VIDEO} have a TTL above 300 s" in r.err
    assert len(r.err_lines) == 1


def test_same_histogram_on_standalone_and_cluster(cli, redis_plain, redis_cluster):
    prefix = unique_prefix()
    docs = []
    for server, entry in ((redis_plain, redis_plain), (redis_cluster, redis_cluster.entry)):
        data = seed(server, prefix)
        try:
            r = cli("ttl", "--pattern", f"{prefix}:*", "--json", env=server_env(entry))
            assert r.code == 0, r.err
            docs.append(r.json())
        finally:
            data.cleanup()
    single, cluster = docs
    assert single["histogram"] == cluster["histogram"]
    assert single["nodes"] == 1 and cluster["nodes"] == 3
    for field in ("keys", "with_ttl", "no_expiry"):
        assert single[field] == cluster[field]


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "ttl needs keys or --pattern"),
        (["a", "--pattern", "b*"], "not both"),
        (["--pattern", ""], "the pattern is empty"),
        (["--pattern", "x*", "--type", "nope"], "--type nope is not valid"),
        (["--pattern", "x*", "--limit", "-1"], "--limit -1 is not valid"),
        (["k", "--type", "hash"], "apply to --pattern only"),
        (["--pattern", "x*", "--expect-max", "-5"], "--expect-max -5 is not valid"),
    ],
)
def test_bad_input_exit_2(cli, args, needle):
    r = cli("ttl", *args, env={"REDIS_PORT": "1"})
    assert r.code == 2, r.err
    assert needle in r.err and len(r.err_lines) == 1
