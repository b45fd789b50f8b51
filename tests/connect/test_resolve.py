"""REDIS_RESOLVE / --resolve, like curl's --resolve NAME:PORT:ADDR: the connection factory
dials ADDR for NAME:PORT and checks the certificate (and sends SNI) for NAME; doctor's DNS
and TCP checks follow it; a bad value is one line, exit 2.

The names used here are in the throwaway certificate (local/certs.py DEFAULT_NAMES:
cache.closeup.test, *.cache.closeup.test) or deliberately not; no name is ever looked up in
DNS (every name under test has a REDIS_RESOLVE entry)."""

from __future__ import annotations

import pytest

from closeup_ops.settings import load


def test_dial_maps_only_the_named_port():
    s = load({}, environ={"REDIS_RESOLVE": "Node1.Cache.closeup.test:7000:127.0.0.2"})
    assert s.dial("node1.cache.closeup.test", 7000) == ("127.0.0.2", 7000)
    assert s.dial("node1.cache.closeup.test", 7001) == ("node1.cache.closeup.test", 7001)
    assert s.dial("other.cache.closeup.test", 7000) == ("other.cache.closeup.test", 7000)


def test_several_entries_and_ipv6():
    s = load({}, environ={"REDIS_RESOLVE": "a.test:1:127.0.0.1, a.test:2:[::1]"})
    assert s.resolve == (("a.test", 1, "127.0.0.1"), ("a.test", 2, "::1"))


def test_the_flag_beats_the_variable():
    s = load({"resolve": "a.test:1:127.0.0.3"}, environ={"REDIS_RESOLVE": "a.test:1:127.0.0.1"})
    assert s.dial("a.test", 1) == ("127.0.0.3", 1)


@pytest.mark.parametrize(
    "value",
    [
        "a.test",
        "a.test:6379",
        "a.test:port:127.0.0.1",
        "a.test:0:127.0.0.1",
        "a.test:70000:127.0.0.1",
        "a.test:6379:not-an-address",
        ":6379:127.0.0.1",
        "a.test:6379:127.0.0.1,b.test",
    ],
)
def test_bad_values_are_one_line_exit_2(cli, value):
    r = cli("ping", env={"REDIS_RESOLVE": value})
    assert r.code == 2
    assert len(r.err_lines) == 1 and "REDIS_RESOLVE" in r.err and "NAME:PORT:ADDRESS" in r.err
    r = cli("ping", "--resolve", value)
    assert r.code == 2 and len(r.err_lines) == 1 and "--resolve" in r.err


def _tls_env(server, tls_files, name: str) -> dict[str, str]:
    return {
        "REDIS_HOST": name,
        "REDIS_PORT": str(server.port),
        "REDIS_TLS": "true",
        "REDIS_CA_CERT": str(tls_files.ca),
        "REDIS_RESOLVE": f"{name}:{server.port}:127.0.0.1",
    }


def test_tls_is_checked_for_the_name_not_the_address(cli, redis_tls, tls_files):
    r = cli("ping", "--json", env=_tls_env(redis_tls, tls_files, "node1.cache.closeup.test"))
    assert r.code == 0, r.err
    # the same server and address, under a name its certificate does not carry: refused
    r = cli("ping", env=_tls_env(redis_tls, tls_files, "node1.elsewhere.test"))
    assert r.code == 3, r.err
    assert len(r.err_lines) == 1


def test_doctor_dials_what_resolve_names(cli, redis_tls, tls_files):
    r = cli("doctor", "--json", env=_tls_env(redis_tls, tls_files, "node1.cache.closeup.test"))
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["dns"]["status"] == "ok" and "REDIS_RESOLVE" in checks["dns"]["evidence"]
    assert checks["tcp"]["status"] == "ok" and "127.0.0.1" in checks["tcp"]["evidence"]
    # (a warning at most: the test certificate expires in 2 days)
    assert checks["tls"]["status"] in ("ok", "warn")
    assert "certificate verified for node1.cache.closeup.test" in checks["tls"]["evidence"]
    assert checks["auth"]["status"] == "ok"


def test_failover_probe_dials_what_resolve_names(cli, redis_tls, tls_files):
    # the probe builds its own clients (no retries, short timeouts): through the same
    # factory, so a name only REDIS_RESOLVE knows is reached and its certificate checked
    env = _tls_env(redis_tls, tls_files, "node1.cache.closeup.test")
    # a generous per-request timeout: a slow TLS handshake on a loaded machine is no outage
    r = cli("failover-test", "--json", "--duration", "1", "--interval", "0.05",
            "--probe-timeout", "5", env=env)  # fmt: skip
    assert r.code == 0, r.err
    summary = r.json()["summary"]
    assert summary["acknowledged"] > 0 and summary["errors_by_type"] == {}, summary
