"""`sandbox up|status|down`: real redis-server processes and a moto server, stopped by PID."""

from __future__ import annotations

import os
import sys

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is not alive
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read()


@pytest.mark.slow
def test_up_status_down(cli, monkeypatch):
    pytest.importorskip("moto")
    r = cli("sandbox", "up", "--cluster", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    pids = [p["pid"] for p in doc["processes"]]
    roles = [p["role"] for p in doc["processes"]]
    try:
        assert roles[:2] == ["primary", "replica"] and "moto" in roles
        assert sum(role.startswith("cluster-node") for role in roles) == 6
        exports = doc["exports"]
        assert exports["ELASTICACHE_CACHE"] == "sandbox-rg"

        # the exports point every command at it: Redis ...
        r = cli("ping", "--json", env=exports)
        assert r.code == 0, r.err
        assert r.json()["nodes"][0]["replicas"] == 1
        # ... and the mocked AWS account, seeded
        import boto3

        ec = boto3.client(
            "elasticache",
            region_name=exports["AWS_REGION"],
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        groups = ec.describe_replication_groups()["ReplicationGroups"]
        assert [g["ReplicationGroupId"] for g in groups] == ["sandbox-rg"]
        snaps = ec.describe_snapshots()["Snapshots"]
        assert [s["SnapshotName"] for s in snaps] == ["sandbox-rg-seed"]

        r = cli("sandbox", "status", "--json")
        assert r.code == 0, r.err
        assert all(p["running"] and p["answering"] for p in r.json()["processes"])

        # a second `up` refuses instead of starting a second set
        r = cli("sandbox", "up", "--no-aws")
        assert r.code == 2 and "already running" in r.err
    finally:
        r = cli("sandbox", "down", "--json")
    assert r.code == 0, r.err
    assert len(r.json()["stopped"]) == len(pids)
    assert not [pid for pid in pids if _alive(pid)]
    r = cli("sandbox", "status")
    assert r.code == 2 and "no sandbox" in r.err


def test_without_moto_says_what_to_install(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "moto.server", None)
    r = cli("sandbox", "up")
    assert r.code == 2
    assert "closeup-ops[sandbox]" in r.err and len(r.err_lines) == 1


def test_moto_is_not_a_runtime_dependency():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    assert "moto" not in runtime
    assert any("moto" in dep for dep in project["project"]["optional-dependencies"]["sandbox"])


def test_down_without_sandbox(cli):
    r = cli("sandbox", "down")
    assert r.code == 2 and "sandbox up" in r.err
