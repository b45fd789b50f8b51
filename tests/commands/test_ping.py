"""`ping` against real servers: plain, password, ACL, TLS, replicated, cluster."""

from __future__ import annotations

from helpers.common import ACL_PASSWORD, ACL_USER, PASSWORD, server_env
from helpers.engines import engine_asked, expected_engine


def test_ping_plain(cli, redis_plain):
    r = cli("ping", "--json", env=server_env(redis_plain))
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["reply"] == "PONG"
    assert doc["cluster"] is False and doc["tls"] is False
    assert [n["role"] for n in doc["nodes"]] == ["master"]


def test_ping_human_table(cli, redis_plain):
    r = cli("ping", env=server_env(redis_plain))
    assert r.code == 0
    assert r.out.startswith("PONG from 127.0.0.1:")
    assert "p50 ms" in r.out and "master" in r.out


def test_ping_says_engine_and_version(cli, redis_plain):
    want = expected_engine(redis_plain)  # "valkey 9.1.2": the server binary's own --version
    assert want.split()[0] == engine_asked()  # the Valkey pass really runs valkey-server
    r = cli("ping", "--json", env=server_env(redis_plain))
    node = r.json()["nodes"][0]
    assert f"{node['engine']} {node['version']}" == want
    r = cli("ping", env=server_env(redis_plain))
    assert want in r.out.splitlines()[-1] and "engine" in r.out


def test_ping_password(cli, redis_password):
    r = cli("ping", "--json", env=server_env(redis_password, REDIS_PASSWORD=PASSWORD))
    assert r.code == 0, r.err
    assert PASSWORD not in r.out + r.err


def test_ping_acl_user(cli, redis_acl):
    env = server_env(redis_acl, REDIS_USERNAME=ACL_USER, REDIS_PASSWORD=ACL_PASSWORD)
    r = cli("ping", "--json", env=env)
    assert r.code == 0, r.err
    assert ACL_PASSWORD not in r.out + r.err


def test_ping_tls_with_ca(cli, redis_tls, tls_files):
    env = server_env(redis_tls, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.ca))
    r = cli("ping", "--json", env=env)
    assert r.code == 0, r.err
    assert r.json()["tls"] is True


def test_ping_tls_hostname_checked_against_server_name(cli, redis_tls, tls_files):
    env = server_env(
        redis_tls,
        REDIS_TLS="true",
        REDIS_CA_CERT=str(tls_files.ca),
        REDIS_TLS_SERVER_NAME="cache.closeup.test",
    )
    assert cli("ping", env=env).code == 0
    env["REDIS_TLS_SERVER_NAME"] = "not-in-the-cert.example"
    r = cli("ping", env=env)
    assert r.code == 3
    assert "certificate" in r.err


def test_ping_tls_insecure_warns(cli, redis_tls):
    r = cli("ping", "--tls", "--insecure", env=server_env(redis_tls))
    assert r.code == 0, r.err
    assert "NOT verified" in r.err


def test_ping_untrusted_ca_fails(cli, redis_tls):
    r = cli("ping", "--tls", env=server_env(redis_tls))
    assert r.code == 3
    assert "REDIS_CA_CERT" in r.err


def test_ping_replicated_shows_role(cli, redis_replicated):
    r = cli("ping", "--json", env=server_env(redis_replicated.primary))
    assert r.code == 0
    node = r.json()["nodes"][0]
    assert node["role"] == "master" and node["replicas"] == 1
    r = cli("ping", "--json", env=server_env(redis_replicated.replica))
    assert r.json()["nodes"][0]["role"] == "slave"


def test_ping_cluster_pings_every_primary(cli, redis_cluster):
    r = cli("ping", "--json", "--count", "3", env=server_env(redis_cluster.entry))
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["cluster"] is True
    addresses = {n["address"] for n in doc["nodes"]}
    assert addresses == {p.address for p in redis_cluster.primaries()}
    assert all(n["role"] == "master" for n in doc["nodes"])
    want = {n.address: expected_engine(n) for n in redis_cluster.nodes}
    assert all(f"{n['engine']} {n['version']}" == want[n["address"]] for n in doc["nodes"])


def test_ping_count_gives_latency_stats(cli, redis_plain):
    r = cli("ping", "--json", "--count", "20", "--interval", "0", env=server_env(redis_plain))
    node = r.json()["nodes"][0]
    assert len(node["latencies_ms"]) == 20
    assert node["min_ms"] <= node["p50_ms"] <= node["p99_ms"] <= node["max_ms"]


def test_ping_cluster_forced_off_still_works_on_one_node(cli, redis_cluster):
    r = cli("ping", "--json", "--no-cluster", env=server_env(redis_cluster.entry))
    assert r.code == 0
    assert r.json()["cluster"] is False


def test_ping_short_count_flag_and_help(cli, redis_plain):
    r = cli("ping", "-c", "3", "--json", env=server_env(redis_plain))
    assert r.code == 0 and len(r.json()["nodes"][0]["latencies_ms"]) == 3
    r = cli("ping", "--help")
    assert "PINGs per primary" in r.out
