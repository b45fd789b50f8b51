"""The serverless stand-in on its own (local/serverless.py): the config it writes for old and
new servers, and an old server's shape (no announced hostname) still reached by name through
REDIS_RESOLVE. The full stand-in, driven as a user does, is in tests/commands/test_sandbox.py."""

from __future__ import annotations

import os
import signal

import pytest

from closeup_ops.local import serverless
from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.serverless import ServerlessStandIn, endpoint_name, start_serverless


def _lines(tmp_path, version, announce_ip=None) -> list[str]:
    s = ServerlessStandIn(
        cache="demo",
        endpoint="demo-abc123.serverless.use1.cache.amazonaws.com",
        port=30000,
        reader_port=30001,
        address="127.0.0.1",
        username="app",
        password="pw-in-the-file",
        tls=make_tls_files(tmp_path / "tls"),
    )
    path = serverless._config(
        s, tmp_path, 30000, ["127.0.0.1"], False, version=version, announce_ip=announce_ip
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the password
    return path.read_text().splitlines()


def test_config_for_redis_7_announces_the_endpoint_name(tmp_path):
    lines = _lines(tmp_path, (7, 0))
    assert "cluster-announce-hostname demo-abc123.serverless.use1.cache.amazonaws.com" in lines
    assert "cluster-preferred-endpoint-type hostname" in lines
    assert "user default off" in lines
    assert "user app on >pw-in-the-file ~* &* +@all" in lines
    assert 'rename-command KEYS ""' in lines and 'rename-command CONFIG ""' in lines
    assert "tls-port 30000" in lines and "port 0" in lines


def test_config_for_older_servers_uses_only_what_they_know(tmp_path):
    lines = _lines(tmp_path, (6, 0), announce_ip="10.233.7.1")
    assert not [line for line in lines if "hostname" in line]  # 7.0+
    assert "user app on >pw-in-the-file ~* +@all" in lines  # &* is 6.2+
    assert "cluster-announce-ip 10.233.7.1" in lines  # what the bastion can reach


def test_server_version_reads_the_binary(tmp_path):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc'\n")
    fake.chmod(0o755)
    assert serverless.server_version(str(fake)) == (6, 0)
    assert serverless.server_version(str(tmp_path / "missing")) == (0, 0)


@pytest.mark.slow
def test_without_an_announced_name_the_name_still_works(tmp_path, cli, monkeypatch):
    """A pre-7.0 server's shape: CLUSTER SLOTS names 127.0.0.1, not the endpoint; the
    tool still dials by REDIS_RESOLVE and checks TLS for the endpoint name."""
    monkeypatch.setattr(serverless, "server_version", lambda binary: (6, 0))
    nodes = []
    try:
        s = start_serverless(tmp_path, endpoint_name("demo"), on_start=nodes.append)
        client = s.client()
        slots = client.execute_command("CLUSTER", "SLOTS")
        client.close()
        assert [n[0].decode() for n in slots[0][2:]] == ["127.0.0.1", "127.0.0.1"]
        env = {
            "REDIS_HOST": s.endpoint,
            "REDIS_PORT": str(s.port),
            "REDIS_USERNAME": s.username,
            "REDIS_PASSWORD": s.password,
            "REDIS_CA_CERT": str(s.tls.ca),
            "REDIS_RESOLVE": s.resolve,
        }
        r = cli("ping", "--json", env=env)
        assert r.code == 0, r.err
        assert r.json()["cluster"] is True
    finally:
        for node in nodes:  # ours, by PID; then reaped
            os.kill(node.pid, signal.SIGTERM)
            os.waitpid(node.pid, 0)
