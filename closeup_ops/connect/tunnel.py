"""SSH local forwards through the bastion, for `closeup-ops tunnel` and `--via-bastion`.

Two parts. paramiko checks the bastion first (host key against known_hosts, our key, that
it forwards to the cache: ops/bastion.py), because it says exactly what is wrong. The bytes
then flow through an OpenSSH `ssh -N -L` child pinned to the host key paramiko verified:
measured against sshtunnel and a tuned paramiko forwarder, only OpenSSH meets the latency
and throughput targets (benchmarks/RESULTS.md, "tunnel").

Cluster mode: the first forward reaches the entry endpoint; CLUSTER SLOTS through it names
every node; each gets a forward and redis-py's address_remap maps node addresses to them.
TLS: we dial 127.0.0.1 but verify the certificate against the real endpoint name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closeup_ops import errors, output
from closeup_ops.connect import ssh_errors
from closeup_ops.errors import ConnectError, OpsError, UsageError
from closeup_ops.ops.bastion import Bastion, bastion_from, check
from closeup_ops.ops.tunnel_nodes import LOCAL, Forward, discover_nodes, remapper
from closeup_ops.settings import Settings

ALIAS = "closeup-ops-bastion"
BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOCAL, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


class OpenSshForwards:
    """One `ssh -N -L ... -L ...` child holding every forward, pinned to a verified key."""

    def __init__(self, bastion: Bastion, host_key: Any, forwards: list[Forward]):
        self.bastion = bastion
        self.forwards = list(forwards)
        self.proc: subprocess.Popen | None = None
        self.stderr: deque[str] = deque(maxlen=30)
        self._dir = Path(tempfile.mkdtemp(prefix="closeup-ops-ssh-"))
        self.pin(host_key)

    def pin(self, host_key: Any) -> None:
        known = self._dir / "known_hosts"
        known.write_text(f"{ALIAS} {host_key.get_name()} {host_key.get_base64()}\n")
        known.chmod(0o600)

    def command(self) -> list[str]:
        binary = shutil.which("ssh")
        if not binary:
            raise ConnectError(
                "the OpenSSH client (ssh) is not installed",
                "install it (apt-get install openssh-client / brew install openssh)",
            )
        b = self.bastion
        options = {
            "BatchMode": "yes",  # never prompt
            "ExitOnForwardFailure": "yes",
            "StrictHostKeyChecking": "yes",  # only the key paramiko verified, pinned below
            "HostKeyAlias": ALIAS,
            "UserKnownHostsFile": str(self._dir / "known_hosts"),
            "GlobalKnownHostsFile": "/dev/null",
            "UpdateHostKeys": "no",
            "ConnectTimeout": str(int(b.timeout)),
            "ServerAliveInterval": "5",  # a dead session is noticed in ~15 s
            "ServerAliveCountMax": "3",
            "LogLevel": "ERROR",
        }
        cmd = [binary, "-N", "-T", "-F", "/dev/null", "-p", str(b.port), "-l", b.user]
        for name, value in options.items():
            cmd += ["-o", f"{name}={value}"]
        if b.key:
            cmd += ["-i", b.key, "-o", "IdentitiesOnly=yes"]
        for fwd in self.forwards:
            cmd += ["-L", fwd.ssh_spec()]
        return cmd + [b.host]

    def start(self) -> None:
        self.stderr.clear()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches us, and we close ssh in order
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        self._wait_listening()

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line.rstrip())

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.bastion.timeout + 5
        waiting = [f.local_port for f in self.forwards]
        while waiting:
            if not self.alive():
                self.proc.wait()  # type: ignore[union-attr]
                time.sleep(0.05)  # let the reader thread catch the last line
                raise ssh_errors.map_ssh_stderr(
                    "\n".join(self.stderr),
                    self.bastion.where,
                    [f.local_port for f in self.forwards],
                )
            waiting = [p for p in waiting if port_free(p)]
            if waiting and time.monotonic() > deadline:
                self.stop()
                raise ConnectError(
                    f"ssh did not open local port(s) {waiting} in time", ssh_errors.REACH_HINT
                )
            if waiting:
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str:
        code = self.proc.poll() if self.proc else None
        last = next((ln for ln in reversed(self.stderr) if ln.strip()), "")
        return f"ssh exited {code}" + (f": {last}" if last else "")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if closeup-ops dies, so no orphan ssh holds the port."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Tunnel:
    """Forwards through the bastion to the cache (and every cluster node)."""

    settings: Settings
    bastion: Bastion
    local_port: int
    announce: Callable[[str], None] = output.info
    forwards: list[Forward] = field(default_factory=list)
    cluster: bool = False
    engine: OpenSshForwards | None = None
    reconnects: int = 0

    @property
    def entry(self) -> Forward:
        return self.forwards[0]

    @property
    def local_settings(self) -> Settings:
        s = self.settings
        return s.with_(
            host=LOCAL,
            port=self.entry.local_port,
            tls=s.use_tls,
            tls_server_name=s.server_name if s.use_tls else s.tls_server_name,
            # After open(): what CLUSTER SLOTS said, unless the user forced cluster mode.
            cluster=bool(self.cluster or s.cluster),
            via_bastion=False,
        )

    def remap(self) -> Callable[[tuple[str, int]], tuple[str, int]] | None:
        return remapper(self.forwards) if self.cluster else None

    def open(self, host_key: Any) -> Tunnel:
        """Start the forwards with the host key `check` verified."""
        s = self.settings
        self.forwards = [Forward(s.host, s.port, self.local_port)]
        self.engine = OpenSshForwards(self.bastion, host_key, self.forwards)
        self.engine.start()
        if s.cluster is not False:
            self._add_cluster_nodes()
        return self

    def _add_cluster_nodes(self) -> None:
        import redis

        from closeup_ops.connect.redis import connection_kwargs

        local = self.local_settings
        kwargs = connection_kwargs(local)
        kwargs.setdefault("connection_class", redis.Connection)
        pool = redis.ConnectionPool(host=LOCAL, port=self.entry.local_port, **kwargs)
        client = redis.Redis(connection_pool=pool)
        try:
            nodes = discover_nodes(client, (self.settings.host, self.settings.port))
        except redis.RedisError as exc:
            raise errors.classify(exc, f"{self.settings.endpoint} (through the tunnel)") from None
        finally:
            client.close()
        if nodes is None:
            return
        self.cluster = True
        known = {(f.remote_host, f.remote_port) for f in self.forwards}
        for host, port in nodes:
            if (host, port) not in known:
                self.forwards.append(Forward(host, port, free_port()))
                known.add((host, port))
        if len(self.forwards) > 1:
            assert self.engine is not None
            self.engine.stop()
            self.engine.forwards = list(self.forwards)
            self.engine.start()

    def check_alive(self) -> None:
        """Reconnect with backoff if the SSH session dropped; raise only on a fatal error
        (the bastion now refuses us), keep trying while it is merely unreachable."""
        engine = self.engine
        if engine is None or engine.alive():
            return
        reason = engine.exit_reason()
        started = time.monotonic()
        for attempt in range(1, 10_000):
            delay = BACKOFF[min(attempt - 1, len(BACKOFF) - 1)]
            self.announce(
                f"SSH session to {self.bastion.where} dropped ({reason}); "
                f"reconnecting in {delay:g} s (attempt {attempt})"
            )
            time.sleep(delay)
            try:
                engine.pin(check(self.bastion))
                engine.start()
            except ConnectError as exc:
                reason = exc.message
                continue
            self.reconnects += 1
            self.announce(
                f"tunnel is back after {time.monotonic() - started:.1f} s "
                f"({len(self.forwards)} forward(s) on the same local ports)"
            )
            return

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def choose_local_port(
    settings: Settings, requested: int | None, announce: Callable[[str], None]
) -> int:
    """--local-port if given (must be free), else the cache port, else a free one (said)."""
    if requested is not None:
        if not port_free(requested):
            raise UsageError(
                f"local port {requested} is already in use",
                "pass another --local-port, or leave it out to get a free one",
            )
        return requested
    if port_free(settings.port):
        return settings.port
    port = free_port()
    announce(f"local port {settings.port} is in use; the tunnel listens on {LOCAL}:{port}")
    return port


def open_tunnel(
    settings: Settings,
    *,
    local_port: int | None = None,
    known_hosts: str | None = None,
    accept_new: bool = False,
    announce: Callable[[str], None] = output.info,
) -> Tunnel:
    bastion = bastion_from(settings, known_hosts, accept_new)
    errors.CONTEXT["bastion"] = bastion.where
    if local_port is not None and not port_free(local_port):
        raise UsageError(
            f"local port {local_port} is already in use",
            "pass another --local-port, or leave it out to get a free one",
        )
    # The bastion first: its errors are the likely ones, and say nothing of local ports.
    host_key = check(bastion, probe=(settings.host, settings.port))
    port = choose_local_port(settings, local_port, announce)
    tunnel = Tunnel(settings, bastion, port, announce)
    try:
        return tunnel.open(host_key)
    except BaseException:
        tunnel.close()
        raise


class _Watcher(threading.Thread):
    """Keeps a --via-bastion tunnel up for a long command (stats --watch, failover-test)."""

    def __init__(self, tunnel: Tunnel):
        super().__init__(daemon=True)
        self.tunnel = tunnel
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                self.tunnel.check_alive()
            except OpsError as exc:
                output.warn(f"tunnel lost: {exc.line()}")
                return


@contextmanager
def tunnelled(settings: Settings) -> Iterator[tuple[Settings, Any]]:
    """A tunnel for one command's run: yields (settings pointing at it, address remap)."""
    quiet = output.warn if not output.json_mode() else (lambda text: None)
    tunnel = open_tunnel(settings, local_port=free_port(), announce=quiet)
    watcher = _Watcher(tunnel)
    watcher.start()
    try:
        yield tunnel.local_settings, tunnel.remap()
    finally:
        watcher.done.set()
        tunnel.close()


def child_env(tunnel: Tunnel, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `tunnel -- CMD`: REDIS_* pointed at the tunnel."""
    from closeup_ops.ops.tunnel_nodes import ENV_MAP

    env = dict(os.environ if base is None else base)
    local = tunnel.local_settings
    env.update(REDIS_HOST=LOCAL, REDIS_PORT=str(local.port))
    for var in ("BASTION_HOST", ENV_MAP):
        env.pop(var, None)
    if local.use_tls:
        env.update(REDIS_TLS="true", REDIS_TLS_SERVER_NAME=local.server_name)
    if tunnel.cluster:
        env.update(REDIS_CLUSTER="true")
        env[ENV_MAP] = ",".join(f"{f.remote}={f.local}" for f in tunnel.forwards)
    return env
