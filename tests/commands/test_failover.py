"""`failover-test` refusals, bad input and the human report, against the shared servers.
The outage tests (own servers, injected failures) are in tests/ops/failover/."""

from __future__ import annotations

import pytest
from helpers.common import server_env
from helpers.engines import expected_engine


def test_cluster_trigger_refused_on_standalone(cli, redis_plain):
    r = cli("failover-test", "--trigger", "cluster", "--duration", "1", env=server_env(redis_plain))
    assert r.code == 2
    assert "needs a cluster-mode cache" in r.err and len(r.err_lines) == 1


@pytest.mark.parametrize("trigger", ["aws", "cluster"])
def test_serverless_endpoint_refused_unless_trigger_none(cli, trigger):
    env = {"REDIS_HOST": "demo-du95w6.serverless.aps1.cache.amazonaws.com"}
    r = cli("failover-test", "--trigger", trigger, env=env)
    assert r.code == 2
    assert "serverless" in r.err and "--trigger none" in r.err and len(r.err_lines) == 1


@pytest.mark.parametrize(
    "args, text",
    [
        (["--trigger", "dns"], "--trigger dns"),
        (["--interval", "0"], "--interval"),
        (["--trigger", "cluster", "--duration", "1", "--trigger-after", "2"], "--trigger-after"),
        (["--probe-url", "ftp://x/health"], "--probe-url"),
        (["--max-lost", "-1"], "--max-lost"),
    ],
)
def test_bad_options_exit_2(cli, redis_plain, args, text):
    r = cli("failover-test", *args, env=server_env(redis_plain))
    assert r.code == 2, r.err
    assert text in r.err and len(r.err_lines) == 1


def test_human_report_has_timeline_and_summary(cli, redis_plain):
    r = cli("failover-test", "--duration", "0.5", env=server_env(redis_plain))
    assert r.code == 0, r.err
    assert "Timeline" in r.out and "Summary" in r.out
    for word in ("start", "end", "downtime", "attempted", "acknowledged", "lost"):
        assert word in r.out
    # the primary's engine, from the server binary's own --version ("valkey 9.1.2")
    start = next(line for line in r.out.splitlines() if " start " in line)
    assert f"({expected_engine(redis_plain)})" in start
    before = next(line for line in r.out.splitlines() if "primary before" in line)
    assert before.rstrip().endswith(f", {expected_engine(redis_plain)})")


def test_trigger_aws_refused_when_automatic_failover_is_off(cli, redis_plain, monkeypatch):
    """Against moto: a replication group without automatic failover -> exit 5, one line,
    before any probe write; the refusal is in the audit log."""
    from moto import mock_aws

    from closeup_ops.audit import read_entries

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        import boto3

        boto3.client("elasticache", region_name="us-east-1").create_replication_group(
            ReplicationGroupId="demo-nofo",
            ReplicationGroupDescription="no failover",
            AutomaticFailoverEnabled=False,
            CacheNodeType="cache.t3.micro",
            Engine="redis",
            NumCacheClusters=2,
        )
        r = cli(
            "failover-test", "--trigger", "aws", "--cache", "demo-nofo", env=server_env(redis_plain)
        )
    assert r.code == 5, r.err
    errors = [line for line in r.err_lines if line.startswith("closeup-ops: error:")]
    assert len(errors) == 1 and "automatic failover is disabled" in errors[0]
    assert read_entries()[-1]["result"] == "error"


def test_via_bastion_probes_through_the_tunnel(cli, redis_plain, sshd):
    """--via-bastion: the probe and the read-back go through the SSH tunnel."""
    from helpers.bastion import bastion_env

    env = {**server_env(redis_plain), **bastion_env(sshd)}
    # a generous per-request timeout: an SSH channel on a loaded machine is no outage
    r = cli(
        "failover-test", "--via-bastion", "--json", "--duration", "1", "--probe-timeout", "5",
        env=env,
    )  # fmt: skip
    assert r.code == 0, r.err
    s = r.json()["summary"]
    assert s["acknowledged"] == s["attempted"] > 5 and s["lost"] == 0


def test_unreachable_cache_exits_3_before_any_trigger(cli):
    from closeup_ops.local.servers import free_port

    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())}
    r = cli("failover-test", "--trigger", "cluster", "--duration", "1", env=env)
    assert r.code == 3
    assert "refused" in r.err and len(r.err_lines) == 1


def test_tls_cache_is_probed_over_tls(cli, redis_tls, tls_files):
    env = server_env(redis_tls, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.ca))
    # a generous per-request timeout: a slow TLS handshake on a loaded machine is no outage
    r = cli("failover-test", "--json", "--duration", "0.5", "--probe-timeout", "5", env=env)
    assert r.code == 0, r.err
    s = r.json()["summary"]
    assert s["acknowledged"] == s["attempted"] > 3 and s["lost"] == 0


def test_a_slow_first_answer_is_waited_for_with_redis_timeout(cli, tmp_path, monkeypatch):
    """Before probing, failover-test asks who the primary is (INFO). That question is given
    REDIS_TIMEOUT, not the probe's short per-request timeout (0.5 s at --interval 0.05): a
    first TLS handshake or SSH channel may take longer; and the run's --duration counts from
    after it. Here the server holds every command for 2 s from the moment the probe's client
    is made, just before that question."""
    import redis

    from closeup_ops.local.servers import start_redis
    from closeup_ops.ops.failover import run

    server = start_redis(tmp_path / "paused")
    real = run.probe_client

    def then_pause(*args, **kwargs):
        made = real(*args, **kwargs)
        with redis.Redis(host=server.host, port=server.port) as admin:
            admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")
        return made

    monkeypatch.setattr(run, "probe_client", then_pause)
    try:
        r = cli("failover-test", "--json", "--duration", "0.5", "--interval", "0.05",
                env=server_env(server, REDIS_TIMEOUT="10"))  # fmt: skip
    finally:
        server.stop()
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["probe_timeout_s"] == 0.5  # 4 x shorter than the pause
    assert doc["primary_before"]["address"].endswith(f":{server.port}")
    assert doc["summary"]["acknowledged"] > 0  # the 0.5 s of probing came after the wait
