"""The tunnel through the bastion, for `closeup-ops tunnel` and `--via-bastion`.

paramiko checks the bastion first (host key against known_hosts, our key, that it
forwards to the cache: bastion.py), because it says exactly what is wrong. The bytes then
flow through an OpenSSH child pinned to the host key paramiko verified, or a tuned paramiko
forwarder where `ssh` is missing (engines.py; numbers in benchmarks/RESULTS.md, "tunnel").

Two shapes:
- a plain (no TLS) standalone cache gets a plain forward (`ssh -L`), as fast as ssh;
- a cluster-mode cache (detected, or serverless by name), any TLS cache, or one whose mode
  cannot be asked (it wants AUTH and the tunnel has no credentials) gets the proxy
  (proxy.py): local plain-TCP listeners on loopback, one per node, every node address in
  CLUSTER SLOTS/SHARDS/NODES, ROLE, INFO and MOVED/ASK rewritten to them, TLS verified
  against the real names (not at all with --insecure, said once on stderr) and AUTH
  (password or a fresh IAM token) done upstream. Any RESP client works unchanged. Its
  upstream connections are dialled through the engine (dial.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import errors, output
from closeup_ops.connect.tunnel.bastion import Bastion, bastion_from, check
from closeup_ops.connect.tunnel.engines import make_engine, port_free
from closeup_ops.connect.tunnel.nodes import (  # noqa: F401 - exports: the API
    CLUSTER_HINT,
    LOCAL,
    Forward,
    child_env,
    client_host,
    exports,
    more_open_files,
    reader_in,
)
from closeup_ops.connect.tunnel.upstream import upstream_for
from closeup_ops.errors import ConnectError, OpsError, UsageError
from closeup_ops.local.servers import free_port  # never 6379
from closeup_ops.settings import Settings

BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)


@dataclass
class Tunnel:
    """A plain forward (standalone, no TLS) or the proxy (cluster mode or TLS)."""

    settings: Settings
    bastion: Bastion
    local_port: int
    announce: Callable[[str], None] = output.info
    bind: str = LOCAL
    # --announce: the name clients elsewhere reach this machine by (a container's
    # host.docker.internal), written into replies and exports instead of the address dialled
    announce_host: str | None = None
    forwards: list[Forward] = field(default_factory=list)  # the plain forward, if any
    cluster: bool = False
    proxy: Any = None  # connect.tunnel.proxy.NodeProxy when proxied
    engine: Any = None  # engines.OpenSshForwards or engines.ParamikoForwards
    reconnects: int = 0
    reader_port: int | None = None  # a serverless cache's reader endpoint, when proxied
    reader_remote: int | None = None  # its port on the cache, as CLUSTER SLOTS says
    announce_nodes: bool = True  # say each node the proxy starts serving after open()
    # Only this process connects, and only after open() (--via-bastion, doctor): a likely
    # plain forward may listen while the cluster mode is asked, saving an ssh restart.
    private: bool = False
    opened: bool = False
    # Set by close(): a reconnect in another thread (the --via-bastion watcher) stops
    # waiting and starts nothing more.
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def proxied(self) -> bool:
        return self.proxy is not None

    @property
    def host(self) -> str:
        """The address a local client dials."""
        return client_host(self.bind)

    @property
    def local(self) -> str:
        return f"{self.host}:{self.local_port}"

    @property
    def remote(self) -> str:
        return self.settings.endpoint

    def nodes(self) -> list[tuple[str, str]]:
        """(cache node, local endpoint) for every node the proxy serves so far."""
        if self.proxy is None:
            return [(f.remote, f.local) for f in self.forwards]
        here = self.announce_host or self.host
        return [
            (f"{host}:{port}", f"{here}:{local}")
            for (host, port), local in sorted(self.proxy.nodes().items(), key=lambda kv: kv[1])
        ]

    @property
    def local_settings(self) -> Settings:
        """Settings that reach the cache through this tunnel (plain TCP to loopback; behind
        the proxy without credentials: it authenticates upstream)."""
        s = self.settings
        local = s.with_(
            host=self.host,
            port=self.local_port,
            cluster=self.cluster,
            via_bastion=False,
        )
        if not self.proxied:
            return local
        return local.with_(
            tls=False,
            tls_server_name=None,
            ca_cert=None,
            insecure=False,
            username=None,
            password=None,
            iam_auth=False,
        )

    def open(self, host_key: Any) -> Tunnel:
        """Start the engine with the host key `check` verified, then the plain forward or
        the proxy."""
        s = self.settings
        more_open_files()  # before ssh starts: it inherits the limit
        if s.use_tls and s.insecure:
            from closeup_ops.connect.redis import warn_insecure

            warn_insecure()  # once: the proxy's every upstream connection skips the check
        cluster = s.cluster if s.cluster is not None else (True if s.serverless else None)
        proxied = s.use_tls or cluster is True
        entry = Forward(s.host, s.port, self.local_port, self.bind)
        # The local port answers only once it does what the tunnel says: a known plain
        # standalone cache gets its -L at once; an unknown one only after asking (a client
        # that connected early to a -L meant for a standalone cache would keep a forward
        # with no AUTH and no address rewriting if the cache turned out to be a cluster),
        # unless no other client can connect before open() returns (private).
        early = cluster is False or (cluster is None and self.private)
        self.forwards = [entry] if early and not proxied else []
        self.engine = make_engine(self.bastion, host_key, self.forwards, dynamic=True)
        self.engine.start()
        rewrite = False  # cluster mode unknown (no credentials to ask): rewrite if it is
        if cluster is None or proxied:
            # Through the dialer: says a wrong password or certificate now, and whether
            # the cache runs in cluster mode when the settings do not say.
            detected = self._ask_cache(ask_cluster=cluster is None)
            # Unknown: the proxy, rewriting node addresses in case it is a cluster (a plain
            # forward would hand a cluster client addresses only the bastion reaches); the
            # client's own AUTH passes through it.
            rewrite = cluster is None and detected is None
            cluster = cluster if cluster is not None else detected
        self.cluster = bool(cluster)
        if (self.cluster or rewrite) and self.forwards:
            self.forwards = []
            self.engine.set_forwards([])  # frees the local port for the proxy
        if self.cluster or proxied or rewrite:
            self._start_proxy(rewrite)
        elif not self.forwards:  # asked: a plain standalone cache, now its -L
            self.forwards = [entry]
            self.engine.set_forwards(self.forwards)
        self.opened = True
        return self

    def _ask_cache(self, ask_cluster: bool) -> bool | None:
        """Connect through the dialer as a client would; True when in cluster mode, None
        when the cache wants AUTH and the tunnel has no credentials (the client's job)."""
        import redis

        from closeup_ops.connect.redis import connection_kwargs
        from closeup_ops.connect.tunnel.dial import dialed_connection

        s = self.settings
        kwargs = connection_kwargs(s)
        base = kwargs.pop("connection_class", redis.Connection)
        kwargs["connection_class"] = dialed_connection(base, self.engine.dialer())
        client = redis.Redis(
            connection_pool=redis.ConnectionPool(host=s.host, port=s.port, **kwargs)
        )
        try:
            if not ask_cluster and not s.serverless:
                client.ping()
                return False
            try:
                slots = client.execute_command("CLUSTER", "SLOTS")
            except redis.ResponseError as exc:
                text = str(exc).lower()
                if "cluster support disabled" in text or "unknown command" in text:
                    return False
                raise
            if s.serverless:  # its reader endpoint: the endpoint's name on another port
                self.reader_remote = reader_in(slots, s.host, s.port)
            return True
        except redis.AuthenticationError as exc:
            if s.password or s.iam_auth:
                raise errors.classify(exc, f"{s.endpoint} (through the tunnel)") from None
            self.announce(
                f"{s.endpoint} wants AUTH and the tunnel has no credentials: your client "
                "must send them (or set REDIS_PASSWORD for the tunnel)"
            )
            return None
        except redis.RedisError as exc:
            raise errors.classify(exc, f"{s.endpoint} (through the tunnel)") from None
        finally:
            client.close()

    def _start_proxy(self, rewrite: bool = False) -> None:
        from closeup_ops.connect.tunnel.proxy import NodeProxy

        s = self.settings
        self.proxy = NodeProxy(
            self.engine.dialer(),
            upstream_for(s),
            cluster=self.cluster or rewrite,
            bind=self.bind,
            announce=self._node_added,
            announce_host=self.announce_host,
        )
        self.proxy.start()
        self.local_port = self.proxy.add(s.host, s.port, self.local_port)
        if s.serverless:
            self._add_reader()
        if self.cluster:
            self._learn_nodes()

    def _add_reader(self) -> None:
        """A serverless cache's reader endpoint (AWS: port 6380 beside 6379, reads after
        READONLY) gets a fixed local port, the next one when free, as on AWS: clients that
        cannot route reads themselves (valkey-java, older Jedis) are configured with it.
        Clients that find it in CLUSTER SLOTS are handed the same listener. Its port is
        the one CLUSTER SLOTS names; when the tunnel could not ask (no credentials), 6380
        beside 6379 as AWS documents, and none on another port."""
        s = self.settings
        remote = self.reader_remote or (6380 if s.port == 6379 else None)
        if remote is None:
            return
        wanted = self.local_port + 1
        port = wanted if wanted <= 65535 and port_free(wanted, self.bind) else None
        self.reader_port = self.proxy.add(s.host, remote, port)

    def _node_added(self, text: str) -> None:
        """The proxy serves a node it had not seen (failover, resharding, a new replica)."""
        if self.opened and self.announce_nodes:
            self.announce(f"new cache node: {text}")

    def _learn_nodes(self) -> None:
        """Ask for the topology through the proxy once: it opens a listener per node, so the
        table shows them all and a client's first redirect finds them ready."""
        import redis

        client = redis.Redis(
            host=self.host, port=self.local_port, socket_timeout=self.settings.timeout + 5
        )
        try:
            client.execute_command("CLUSTER", "SLOTS")
        except redis.AuthenticationError:
            pass  # no credentials in the tunnel: nodes get listeners as clients ask
        except redis.RedisError as exc:
            raise errors.classify(exc, f"{self.remote} (through the tunnel)") from None
        finally:
            client.close()

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
            if self.proxy is not None:
                self.proxy.set_dial(engine.dialer())
            self.reconnects += 1
            self.announce(
                f"tunnel is back after {time.monotonic() - started:.1f} s "
                f"({len(self.nodes())} local endpoint(s) on the same ports)"
            )
            return

    def close(self) -> None:
        self.closing.set()
        if self.proxy is not None:
            self.proxy.close()
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def choose_local_port(
    settings: Settings,
    requested: int | None,
    announce: Callable[[str], None],
    bind: str = LOCAL,
) -> int:
    """--local-port if given (must be free), else the cache port, else a free one (said)."""
    if requested is not None:
        if not port_free(requested, bind):
            raise UsageError(
                f"local port {requested} is already in use",
                "pass another --local-port, or leave it out to get a free one",
            )
        return requested
    if port_free(settings.port, bind):
        return settings.port
    port = free_port(bind)
    announce(
        f"local port {settings.port} is in use; the tunnel listens on {client_host(bind)}:{port}"
    )
    return port


def open_tunnel(
    settings: Settings,
    *,
    local_port: int | None = None,
    known_hosts: str | None = None,
    accept_new: bool = False,
    announce: Callable[[str], None] = output.info,
    bind: str = LOCAL,
    announce_nodes: bool = True,
    private: bool = False,
    announce_host: str | None = None,
) -> Tunnel:
    bastion = bastion_from(settings, known_hosts, accept_new)
    errors.CONTEXT["bastion"] = bastion.where
    if local_port is not None:
        choose_local_port(settings, local_port, announce, bind)  # a taken one fails now
    # The bastion first: its errors are the likely ones, and say nothing of local ports.
    host_key = check(bastion, probe=(settings.host, settings.port))
    port = choose_local_port(settings, local_port, announce, bind)
    tunnel = Tunnel(
        settings,
        bastion,
        port,
        announce,
        bind=bind,
        announce_host=announce_host,
        announce_nodes=announce_nodes,
        private=private,
    )
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
    """A tunnel for one command's run: yields (settings pointing at it, None). The second
    item was an address remap; the proxy rewrites node addresses itself now, so any client
    built from the settings follows cluster redirects."""
    # Drops and reconnects are said on stderr (as warnings), --json or not.
    tunnel = open_tunnel(
        settings, local_port=free_port(), announce=output.warn, announce_nodes=False, private=True
    )
    watcher = _Watcher(tunnel)
    watcher.start()
    try:
        yield tunnel.local_settings, None
    finally:
        watcher.done.set()
        tunnel.close()
