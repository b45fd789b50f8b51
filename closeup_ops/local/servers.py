"""Real redis-server (or valkey-server) processes on free loopback ports, stopped by PID.

Used by the test fixtures, the benchmarks and `closeup-ops sandbox`: one way to start a
standalone server, a TLS server or a primary with a replica (a cluster: cluster.py). Valkey
instead of Redis: engine="valkey" or CLOSEUP_OPS_TEST_SERVER=valkey.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from closeup_ops.local.engines import (  # noqa: F401  (re-exported for the tests)
    ENGINE_ENV,
    EngineLacks,
    missing_features,
    server_binary,
    server_engine,
)

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port free right now (never 6379, which the machine's own Redis may hold)."""
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


def redis_server_binary(engine: str | None = None) -> str:
    """The server binary for `engine` (local/engines.py): redis-server, or valkey-server."""
    return server_binary(engine)


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass
class RedisProcess:
    port: int
    workdir: Path
    proc: subprocess.Popen | None = field(repr=False, default=None)
    host: str = LOOPBACK
    tls: bool = False
    password: str | None = field(default=None, repr=False)
    pid: int | None = None
    tls_files: TLSFiles | None = field(default=None, repr=False)  # for redis_cli on a TLS node
    engine: str = "redis"  # "redis" or "valkey": which server binary runs

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Stop this server by its PID (and nothing else)."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGCONT)  # a paused (SIGSTOP) server cannot exit
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        else:
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def tls_args(tls: TLSFiles, port: int) -> list[str]:
    """redis-server flags for TLS only on `port` (plain port off), clients not verified."""
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(tls.cert),
        "--tls-key-file", str(tls.key),
        "--tls-ca-cert-file", str(tls.ca),
        "--tls-auth-clients", "no",
        "--tls-replication", "yes",
        "--tls-cluster", "yes",
    ]  # fmt: skip


def start_redis(
    workdir: Path,
    *extra: str,
    port: int | None = None,
    tls: TLSFiles | None = None,
    password: str | None = None,
    bind: str = LOOPBACK,
    detach: bool = False,
    ready_timeout: float = 15,
    engine: str | None = None,
) -> RedisProcess:
    """Start redis-server in `workdir`; returns once it accepts connections.

    `detach=True` starts it in its own session (for `sandbox up`, which outlives the CLI).
    `engine`: "redis" or "valkey" (default: $CLOSEUP_OPS_TEST_SERVER, else redis); a build
    that lacks what is asked (TLS) raises EngineLacks before anything starts.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    engine = server_engine(engine)
    binary = server_binary(engine)
    if tls and "tls" in missing_features(binary):
        raise EngineLacks("tls", missing_features(binary)["tls"])
    port = port or free_port()
    args = [
        binary,
        "--bind",
        bind,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
    ]
    if tls:
        args += tls_args(tls, port)
    else:
        args += ["--port", str(port)]
    if password:
        args += ["--requirepass", password, "--masterauth", password]
    args += list(extra)
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=detach,
        cwd=workdir,
    )
    server = RedisProcess(
        port=port,
        workdir=workdir,
        proc=proc,
        host=bind,
        tls=bool(tls),
        password=password,
        pid=proc.pid,
        tls_files=tls,
        engine=engine,
    )
    _wait_ready(server, ready_timeout)
    return server


def _wait_ready(server: RedisProcess, timeout: float) -> None:
    log = server.workdir / "redis.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise RuntimeError(f"redis-server on port {server.port} exited: {tail}")
        if log.exists() and "Ready to accept connections" in log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"redis-server on port {server.port} not ready after {timeout} s")


def redis_cli(
    server: RedisProcess, *args: str, tls: TLSFiles | None = None, timeout: float = 30
) -> str:
    """Run redis-cli against a server (for set-up steps, not for the tool's own work)."""
    cmd = ["redis-cli", "-h", server.host, "-p", str(server.port)]
    tls = tls or server.tls_files
    if tls:
        cmd += ["--tls", "--cacert", str(tls.ca)]
    env = dict(os.environ)
    if server.password:
        env["REDISCLI_AUTH"] = server.password
    out = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {out.stderr or out.stdout}")
    return out.stdout


@dataclass
class ReplicatedPair:
    primary: RedisProcess
    replica: RedisProcess

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


def start_replicated(
    workdir: Path,
    *extra: str,
    password: str | None = None,
    detach: bool = False,
    engine: str | None = None,
) -> ReplicatedPair:
    primary = start_redis(
        Path(workdir) / "primary", *extra, password=password, detach=detach, engine=engine
    )
    replica = start_redis(
        Path(workdir) / "replica",
        *extra,
        "--replicaof",
        primary.host,
        str(primary.port),
        password=password,
        detach=detach,
        engine=engine,
    )
    wait_for(
        lambda: "master_link_status:up" in redis_cli(replica, "INFO", "replication"),
        "replica to sync",
    )
    return ReplicatedPair(primary, replica)


def wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except RuntimeError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")
