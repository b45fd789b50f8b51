"""`doctor` driven as a user would, against real servers: healthy, wrong password, TLS
mismatch both ways, closed port, a listener that never answers, an unresolvable name,
REDIS_DB on a cluster. Failed checks are data: exit 6, never 3 or 4."""

from __future__ import annotations

import pytest
from helpers.common import ACL_PASSWORD, ACL_USER, PASSWORD, server_env
from helpers.common import silent_listener as listen_silently
from helpers.engines import expected_engine

from closeup_ops.local.servers import free_port

REDIS_CHECKS = ["settings", "dns", "tcp", "tls", "auth", "ping", "cluster", "server"]
AWS_CHECKS = ["aws-cache", "security-group", "backups", "alarms"]


def checks(result) -> dict[str, dict]:
    doc = result.json()
    return {c["name"]: c for c in doc["checks"]}


def statuses(result) -> dict[str, str]:
    return {name: c["status"] for name, c in checks(result).items()}


def assert_skipped_after(result, name: str) -> None:
    order = [c["name"] for c in result.json()["checks"]]
    later = order[order.index(name) + 1 : order.index("aws-cache")]
    assert later, "there should be later checks"
    assert all(statuses(result)[n] == "skip" for n in later)


@pytest.fixture
def silent_listener():
    """Accepts connections and never answers."""
    with listen_silently() as port:
        yield port


def test_healthy_plain_server(cli, redis_plain):
    r = cli("doctor", "--json", env=server_env(redis_plain))
    assert r.code == 0, r.err
    doc = r.json()
    assert [c["name"] for c in doc["checks"]] == REDIS_CHECKS + AWS_CHECKS
    st = statuses(r)
    assert all(st[n] == "ok" for n in REDIS_CHECKS), doc
    # no cache named and 127.0.0.1 is no ElastiCache endpoint: AWS checks skip with a reason
    assert all(st[n] == "skip" for n in AWS_CHECKS)
    assert "ELASTICACHE_CACHE" in checks(r)["aws-cache"]["evidence"]
    assert doc["passed"] is True and doc["counts"]["fail"] == 0
    assert "loopback" in checks(r)["dns"]["evidence"]
    # "redis 7.0.15" / "valkey 9.1.2", as the server binary's own --version says
    assert checks(r)["server"]["evidence"].startswith(expected_engine(redis_plain) + ", role")
    assert r.err == ""


def test_healthy_human_output(cli, redis_plain):
    r = cli("doctor", env=server_env(redis_plain))
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("closeup-ops doctor: 127.0.0.1:")
    assert any(line.split()[:2] == ["ok", "ping"] for line in lines)
    assert lines[-1].startswith("8 ok, 0 warn, 0 fail, 4 skip")


def test_wrong_password_is_a_failed_check_not_exit_4(cli, redis_password):
    r = cli("doctor", "--json", env=server_env(redis_password, REDIS_PASSWORD="not-it-123"))
    assert r.code == 6
    auth = checks(r)["auth"]
    assert auth["status"] == "fail"
    assert "WRONGPASS" in auth["evidence"]
    assert "REDIS_PASSWORD" in auth["fix"]
    assert statuses(r)["tls"] == "ok"
    assert_skipped_after(r, "auth")
    assert "not-it-123" not in r.out + r.err
    assert len(r.err_lines) == 1 and "auth" in r.err


def test_missing_password_says_noauth_and_what_to_set(cli, redis_password):
    r = cli("doctor", "--json", env=server_env(redis_password))
    assert r.code == 6
    auth = checks(r)["auth"]
    assert auth["status"] == "fail" and "NOAUTH" in auth["evidence"]
    assert "REDIS_PASSWORD" in auth["fix"]


def test_right_password_and_acl_user(cli, redis_password, redis_acl):
    r = cli("doctor", "--json", env=server_env(redis_password, REDIS_PASSWORD=PASSWORD))
    assert r.code == 0, r.out
    assert PASSWORD not in r.out + r.err
    env = server_env(redis_acl, REDIS_USERNAME=ACL_USER, REDIS_PASSWORD=ACL_PASSWORD)
    r = cli("doctor", "--json", env=env)
    assert r.code == 0, r.out
    assert f"user {ACL_USER}" in checks(r)["auth"]["evidence"]


def test_plain_client_to_tls_server_says_server_expects_tls(cli, redis_tls):
    r = cli("doctor", "--json", "--no-tls", env=server_env(redis_tls, REDIS_TIMEOUT="2"))
    assert r.code == 6
    tls = checks(r)["tls"]
    assert tls["status"] == "fail"
    assert "expects TLS" in tls["evidence"]
    assert "REDIS_TLS=true" in tls["fix"]
    assert statuses(r)["tcp"] == "ok"
    assert_skipped_after(r, "tls")


def test_tls_client_to_plain_server_says_server_does_not_use_tls(cli, redis_plain):
    r = cli("doctor", "--json", "--tls", env=server_env(redis_plain, REDIS_TIMEOUT="1"))
    assert r.code == 6
    tls = checks(r)["tls"]
    assert tls["status"] == "fail"
    assert "does not use TLS" in tls["evidence"]
    assert "REDIS_TLS=false" in tls["fix"]


def test_tls_healthy_and_untrusted(cli, redis_tls, tls_files):
    env = server_env(redis_tls, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.ca))
    r = cli("doctor", "--json", env=env)
    assert r.code == 0, r.out
    assert "certificate verified" in checks(r)["tls"]["evidence"]
    r = cli("doctor", "--json", "--tls", env=server_env(redis_tls))
    assert r.code == 6
    tls = checks(r)["tls"]
    assert tls["status"] == "fail" and "REDIS_CA_CERT" in tls["fix"]
    env["REDIS_TLS_SERVER_NAME"] = "not-in-the-cert.example"
    r = cli("doctor", "--json", env=env)
    assert checks(r)["tls"]["status"] == "fail"
    assert "REDIS_TLS_SERVER_NAME" in checks(r)["tls"]["fix"]


def test_closed_port(cli):
    port = free_port()
    r = cli("doctor", "--json", env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)})
    assert r.code == 6
    tcp = checks(r)["tcp"]
    assert tcp["status"] == "fail" and "refused" in tcp["evidence"]
    assert "REDIS_PORT" in tcp["fix"]
    assert_skipped_after(r, "tcp")


def test_listener_that_never_answers(cli, silent_listener):
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(silent_listener), "REDIS_TIMEOUT": "1"}
    r = cli("doctor", "--json", env=env)
    assert r.code == 6
    st = statuses(r)
    assert st["tcp"] == "ok"
    tls = checks(r)["tls"]
    assert tls["status"] == "fail" and "no reply to PING within 1 s" in tls["evidence"]
    assert "REDIS_PORT" in tls["fix"]
    r = cli("doctor", "--json", "--tls", env=env)
    assert r.code == 6
    assert "no TLS handshake" in checks(r)["tls"]["evidence"]


def test_unresolvable_name_is_a_failed_check_not_exit_3(cli):
    r = cli("doctor", "--json", env={"REDIS_HOST": "no-such-cache.invalid", "REDIS_PORT": "6380"})
    assert r.code == 6
    dns = checks(r)["dns"]
    assert dns["status"] == "fail" and "does not resolve" in dns["evidence"]
    assert "closeup-ops tunnel" in dns["fix"]
    assert statuses(r)["settings"] == "ok"
    assert_skipped_after(r, "dns")


def test_redis_db_on_a_cluster(cli, redis_cluster):
    r = cli("doctor", "--json", env=server_env(redis_cluster.entry, REDIS_DB="3"))
    assert r.code == 6, r.err
    cluster = checks(r)["cluster"]
    assert cluster["status"] == "fail"
    assert "REDIS_DB=3" in cluster["evidence"] and "cluster mode" in cluster["evidence"]
    assert "REDIS_DB=0" in cluster["fix"]
    assert statuses(r)["ping"] == "ok"
    assert statuses(r)["server"] == "ok"  # server facts need PING, not the database


def test_healthy_cluster(cli, redis_cluster):
    r = cli("doctor", "--json", env=server_env(redis_cluster.entry))
    assert r.code == 0, r.out
    assert "3 primaries" in checks(r)["cluster"]["evidence"]


def test_cluster_forced_off_warns(cli, redis_cluster):
    r = cli("doctor", "--json", "--no-cluster", env=server_env(redis_cluster.entry))
    assert r.code == 0
    assert checks(r)["cluster"]["status"] == "warn"


def test_standalone_db_is_selected(cli, redis_plain):
    r = cli("doctor", "--json", env=server_env(redis_plain, REDIS_DB="3"))
    assert r.code == 0
    assert "database 3" in checks(r)["cluster"]["evidence"]


def test_replica_warns(cli, redis_replicated):
    r = cli("doctor", "--json", env=server_env(redis_replicated.replica))
    assert r.code == 0
    server = checks(r)["server"]
    assert server["status"] == "warn" and "replica" in server["evidence"]


def test_bad_settings_still_exit_2(cli):
    r = cli("doctor", "--port", "70000")
    assert r.code == 2
    assert "--port" in r.err
    r = cli("doctor", "--client-ip", "nope", env={"REDIS_PORT": str(free_port())})
    assert r.code == 2


def test_human_output_gives_the_fix(cli):
    r = cli("doctor", env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())})
    assert r.code == 6
    assert "FAIL  tcp" in r.out
    assert "fix: check REDIS_PORT" in r.out
    assert r.err_lines == [
        "closeup-ops: error: doctor: 1 check(s) failed (tcp): apply the fix shown for each "
        "failed check"
    ]


def test_via_bastion_adds_a_tunnel_check(cli, redis_plain, sshd):
    from helpers.bastion import bastion_env

    env = {**server_env(redis_plain), **bastion_env(sshd)}
    r = cli("doctor", "--json", "--via-bastion", env=env)
    assert r.code == 0, r.out + r.err
    order = [c["name"] for c in r.json()["checks"]]
    assert order[0] == "tunnel" and statuses(r)["tunnel"] == "ok"
    assert all(statuses(r)[n] == "ok" for n in REDIS_CHECKS)


def test_via_bastion_unreachable_is_a_failed_check(cli, redis_plain, sshd):
    from helpers.bastion import bastion_env

    env = {**server_env(redis_plain), **bastion_env(sshd), "BASTION_PORT": str(free_port())}
    r = cli("doctor", "--json", "--via-bastion", env=env)
    assert r.code == 6
    tunnel = checks(r)["tunnel"]
    assert tunnel["status"] == "fail" and "bastion" in tunnel["evidence"]
    assert all(statuses(r)[n] == "skip" for n in REDIS_CHECKS)


def test_via_bastion_without_bastion_host_is_exit_2(cli, redis_plain):
    r = cli("doctor", "--via-bastion", env=server_env(redis_plain))
    assert r.code == 2 and "BASTION_HOST" in r.err


def test_standalone_db_out_of_range(cli, redis_plain):
    r = cli("doctor", "--json", env=server_env(redis_plain, REDIS_DB="99"))
    assert r.code == 6
    cluster = checks(r)["cluster"]
    assert cluster["status"] == "fail" and "SELECT 99" in cluster["evidence"]
    assert "REDIS_DB" in cluster["fix"]


def test_help_shows_the_doctor_flags(cli):
    r = cli("doctor", "--help")
    assert r.code == 0
    assert "--client-sg SG" in r.out and "--client-ip IP" in r.out
    assert "--no-no-aws" not in r.out and "Skip the AWS checks" in r.out
