"""`--insecure` through the tunnel: the proxy's TLS to the cache skips verification, so it is
said as loudly as for a direct connection (the same one warning line on stderr, once per
run however many connections the proxy makes) and nothing claims the certificate is
verified. The TLS server's CA is never given here: only --insecure gets through."""

from __future__ import annotations

import redis
from helpers.bastion import HeldTunnel, bastion_env
from helpers.common import server_env

WARNING = "closeup-ops: warning: --insecure: the server certificate is NOT verified"


def tls_env(server, sshd) -> dict[str, str]:
    # REDIS_HOST=localhost: the bastion resolves it; the proxy dials it with TLS
    return {**server_env(server, REDIS_HOST="localhost", REDIS_TLS="true"), **bastion_env(sshd)}


def test_ping_via_bastion_insecure_warns_once(cli, redis_tls, sshd):
    env = tls_env(redis_tls, sshd)
    assert cli("ping", "--via-bastion", env=env).code == 3  # unverifiable without the CA
    r = cli("ping", "--via-bastion", "--insecure", "--count", "3", "--json", env=env)
    assert r.code == 0, r.err
    assert r.json()["tls"] is True
    assert r.err_lines.count(WARNING) == 1, r.err


def test_tunnel_insecure_says_not_verified_and_warns_once_for_many_connections(redis_tls, sshd):
    held = HeldTunnel(tls_env(redis_tls, sshd), "--insecure", text=True)
    try:
        said = "\n".join(held.lines)
        assert "TLS to the cache is NOT verified (--insecure)" in said, said
        assert "verified against" not in said
        for _ in range(3):  # a new upstream connection (and TLS handshake) each
            client = redis.Redis(port=held.port, socket_timeout=10)
            assert client.ping()
            client.close()
    finally:
        assert held.interrupt() == 0
    held.wait_for_err("closing the tunnel")  # the last line: every earlier one was read
    assert held.err_lines.count(WARNING) == 1, held.err_lines


def test_tunnel_insecure_json_says_unverified(redis_tls, tls_files, sshd):
    held = HeldTunnel(tls_env(redis_tls, sshd), "--insecure")
    try:
        assert held.doc["tls"] is True and held.doc["tls_verified"] is False
    finally:
        assert held.interrupt() == 0
    env = {**tls_env(redis_tls, sshd), "REDIS_CA_CERT": str(tls_files.ca)}
    verified = HeldTunnel(env)
    try:
        assert verified.doc["tls_verified"] is True
    finally:
        assert verified.interrupt() == 0
    verified.wait_for_err("closing the tunnel")
    assert WARNING not in verified.err_lines


def test_doctor_via_bastion_insecure_warns_and_does_not_claim_verification(cli, redis_tls, sshd):
    r = cli("doctor", "--via-bastion", "--insecure", "--json", env=tls_env(redis_tls, sshd))
    checks = {c["name"]: c for c in r.json()["checks"]}
    tunnel = checks["tunnel"]
    assert tunnel["status"] == "warn", tunnel
    assert "NOT verified" in tunnel["evidence"] and "verified by" not in tunnel["evidence"]
    assert "REDIS_CA_CERT" in tunnel["fix"]
    assert r.err_lines.count(WARNING) == 1, r.err
