"""End to end: the installed CLI, as a subprocess, against a moto_server on loopback through
AWS_ENDPOINT_URL: caches, snapshot create/list/restore (new and existing name), sg allow
twice, sg allow 0.0.0.0/0, sg revoke.

moto's gaps and how they are covered elsewhere: moto has no ElastiCache Serverless API
(DescribeServerlessCaches answers 500; the CLI notes it once and carries on), creates every
snapshot already `available`, and does not report a cache cluster's SecurityGroups, so the
sg steps name the group with --group-id. Serverless, status transitions and security group
discovery are covered with botocore's Stubber in tests/commands/test_snapshot.py,
tests/commands/test_sg.py and tests/ops/aws/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.aws import FAKE_ENV, build_world

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_command(port: int) -> list[str]:
    script = VENV_BIN / "moto_server"
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture
def moto_server(tmp_path):
    if shutil.which("moto_server", path=str(VENV_BIN)) is None:
        pytest.importorskip("moto.server")
    port = _free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(_moto_command(port), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {proc.returncode}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _cli_command() -> list[str]:
    script = VENV_BIN / "closeup-ops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "closeup_ops"]


def test_end_to_end_against_moto_server(moto_server, tmp_path, monkeypatch):
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    world = build_world(endpoint_url=moto_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_"))}
    env.update(FAKE_ENV, AWS_ENDPOINT_URL=moto_server, XDG_STATE_HOME=str(tmp_path / "state"))

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            _cli_command() + list(args),
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )

    r = run("caches", "--json")
    assert r.returncode == 0, r.stderr
    kinds = {c["name"]: c["kind"] for c in json.loads(r.stdout)}
    assert kinds == {"demo": "replication-group", "single": "cache-cluster"}

    # the cache found from REDIS_HOST (its primary endpoint), default name, --wait
    primary = world.group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    r = run("snapshot", "create", "--wait", "--json", REDIS_HOST=primary)
    assert r.returncode == 0, r.stderr
    auto = json.loads(r.stdout)
    assert auto["cache"] == "demo" and auto["status"] == "available"
    r = run("snapshot", "create", "--cache", "demo", "--name", "e2e-1", "--json")
    assert r.returncode == 0, r.stderr

    r = run("snapshot", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert {s["name"] for s in json.loads(r.stdout)} == {auto["name"], "e2e-1"}

    r = run("snapshot", "restore", "e2e-1", "--target", "demo-restored", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["copied_from"] == "demo"
    r = run("snapshot", "restore", "e2e-1", "--target", "single")
    assert r.returncode == 5 and "already exists" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("caches", "--json")
    assert {c["name"] for c in json.loads(r.stdout)} == {"demo", "single", "demo-restored"}

    sg = ("--cache", "demo", "--group-id", world.cache_sg, "--from-sg", world.app_sg)
    r = run("sg", "allow", *sg)
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    r = run("sg", "allow", *sg)
    assert r.returncode == 0 and "already allowed" in r.stdout, r.stderr
    r = run("sg", "allow", "--cidr", "0.0.0.0/0", "--group-id", world.cache_sg)
    assert r.returncode == 2 and "whole internet" in r.stderr
    r = run("sg", "revoke", *sg)
    assert r.returncode == 0 and "removed" in r.stdout, r.stderr
    r = run("sg", "show", "--cache", "demo", "--group-id", world.cache_sg, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["rules"] == []

    log = tmp_path / "state" / "closeup-ops" / "audit.log"
    commands = [json.loads(line)["command"] for line in log.read_text().splitlines()]
    assert commands == [
        "snapshot create",
        "snapshot create",
        "snapshot restore",
        "sg allow",
        "sg allow",
        "sg revoke",
    ]
