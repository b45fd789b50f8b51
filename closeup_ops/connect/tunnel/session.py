"""SSH local forwards through the bastion, for `closeup-ops tunnel` and `--via-bastion`.

Two parts. paramiko checks the bastion first (host key against known_hosts, our key, that
it forwards to the cache: bastion.py), because it says exactly what is wrong. The bytes
then flow through an OpenSSH `ssh -N -L` child pinned to the host key paramiko verified, or
a tuned paramiko forwarder where `ssh` is missing (engines.py): measured against
sshtunnel and paramiko, OpenSSH is the one that meets the latency and throughput targets
with room to spare (benchmarks/RESULTS.md, "tunnel").

Cluster mode: the first forward reaches the entry endpoint; CLUSTER SLOTS through it names
every node; each gets a forward and redis-py's address_remap maps node addresses to them.
TLS: we dial 127.0.0.1 but verify the certificate against the real endpoint name.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import errors, output
from closeup_ops.connect.tunnel.bastion import Bastion, bastion_from, check
from closeup_ops.connect.tunnel.engines import make_engine, port_free
from closeup_ops.connect.tunnel.nodes import LOCAL, Forward, discover_nodes, remapper
from closeup_ops.errors import ConnectError, OpsError, UsageError
from closeup_ops.local.servers import free_port  # never 6379
from closeup_ops.settings import Settings

BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)


@dataclass
class Tunnel:
    """Forwards through the bastion to the cache (and every cluster node)."""

    settings: Settings
    bastion: Bastion
    local_port: int
    announce: Callable[[str], None] = output.info
    forwards: list[Forward] = field(default_factory=list)
    cluster: bool = False
    engine: Any = None  # ops.forward_engines: OpenSshForwards or ParamikoForwards
    reconnects: int = 0
    # Set by close(): a reconnect in another thread (the --via-bastion watcher) stops
    # waiting and starts nothing more.
    closing: threading.Event = field(default_factory=threading.Event)

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
        self.engine = make_engine(self.bastion, host_key, self.forwards)
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
            if self.closing.wait(delay):
                return
            try:
                engine.pin(check(self.bastion))
                engine.start()
            except ConnectError as exc:
                reason = exc.message
                continue
            if self.closing.is_set():
                engine.stop()
                return
            self.reconnects += 1
            self.announce(
                f"tunnel is back after {time.monotonic() - started:.1f} s "
                f"({len(self.forwards)} forward(s) on the same local ports)"
            )
            return

    def close(self) -> None:
        self.closing.set()
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
    if local_port is not None:
        choose_local_port(settings, local_port, announce)  # a taken --local-port fails now
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
    # Drops and reconnects are said on stderr (as warnings), --json or not.
    tunnel = open_tunnel(settings, local_port=free_port(), announce=output.warn)
    watcher = _Watcher(tunnel)
    watcher.start()
    try:
        yield tunnel.local_settings, tunnel.remap()
    finally:
        watcher.done.set()
        tunnel.close()


def exports(tunnel: Tunnel) -> dict[str, str]:
    """The REDIS_* variables that point a client at the tunnel (printed and given to CMD)."""
    local = tunnel.local_settings
    out = {"REDIS_HOST": LOCAL, "REDIS_PORT": str(local.port)}
    if local.use_tls:  # 127.0.0.1 is not a serverless name: TLS must be said
        out.update(REDIS_TLS="true", REDIS_TLS_SERVER_NAME=local.server_name)
    if tunnel.cluster:
        out["REDIS_CLUSTER"] = "true"
    return out


def child_env(tunnel: Tunnel, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `tunnel -- CMD`: REDIS_* pointed at the tunnel, plus the node
    address map for a closeup-ops child in cluster mode."""
    from closeup_ops.connect.tunnel.nodes import ENV_MAP, encode_map

    env = dict(os.environ if base is None else base)
    for var in ("BASTION_HOST", ENV_MAP):
        env.pop(var, None)
    env.update(exports(tunnel))
    if tunnel.cluster:
        env[ENV_MAP] = encode_map(tunnel.forwards)
    return env
