"""`failover-test` refusals, bad input and the human report, against the shared servers.
The outage tests (own servers, injected failures) are in tests/failover/."""

from __future__ import annotations

import pytest
from helpers.common import server_env


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
