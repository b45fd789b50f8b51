"""The failover probe: write the next sequence number, read it back, record the outcome.

Every attempt is recorded with its time (monotonic seconds since the probe started), its
latency and, when it failed, a short error type. The client is built for measuring, not for
hiding failures: no library retries, a short socket timeout, and after any error the
standalone pool is dropped so that the next attempt reconnects (and re-resolves the
endpoint, which is how a client follows an ElastiCache DNS switch). In cluster mode
redis-py's cluster client follows MOVED/ASK and refreshes the topology like an application
client would; every change of the node that serves the probe's slot is counted.

Keys: `closeup-ops:failover:{<tag>}:<seq>`, one per write, each with a TTL. One key per
write makes lost-write detection exact (a key is there or it is not) and the hash tag puts
them all in one slot (the chosen shard's, in cluster mode), so the read-back is one MGET
per chunk.
"""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from closeup_ops.connect.redis import cluster_client, connection_kwargs, standalone_client
from closeup_ops.ops.engine import engine_of
from closeup_ops.settings import Settings

PREFIX = "closeup-ops:failover"
READBACK_CHUNK = 500


@dataclass
class Attempt:
    seq: int
    t: float  # seconds since the probe started (monotonic clock)
    latency_ms: float
    acked: bool  # the write was acknowledged
    ok: bool  # acknowledged and read back with the value written
    error: str | None = None
    node: str | None = None  # the node that served it (cluster mode)


@dataclass
class NodeIdentity:
    address: str  # host:port of the server answering (resolved IP : tcp_port standalone)
    run_id: str
    t: float | None = None  # when it was seen (probe seconds)
    engine: str = ""  # "valkey 8.0.2" / "redis 7.0.15" (ops/engine.py)


@dataclass
class KeySpace:
    run_id: str
    tag: str
    ttl: int

    def key(self, seq: int) -> str:
        return f"{PREFIX}:{{{self.tag}}}:{seq}"

    @property
    def pattern(self) -> str:
        return f"{PREFIX}:{{{self.tag}}}:*"


def keyspace_for(run_id: str, ttl: int, slots: set[int] | None = None) -> KeySpace:
    """A key space whose hash tag falls into `slots` (the chosen shard), if given."""
    if not slots:
        return KeySpace(run_id, run_id, ttl)
    for n in range(1_000_000):
        tag = f"{run_id}-{n}"
        if key_slot(tag.encode()) in slots:
            return KeySpace(run_id, tag, ttl)
    raise RuntimeError("no hash tag found for the shard's slots")  # pragma: no cover


def probe_timeout(interval: float, redis_timeout: float) -> float:
    """Per-request socket timeout: ten intervals, at least 0.25 s, at most REDIS_TIMEOUT.

    Long enough for a TLS handshake to a nearby cache, short enough that a hung connection
    costs a few missed probes and not the REDIS_TIMEOUT default of 5 s."""
    return round(min(redis_timeout, max(0.25, 10 * interval)), 3)


def probe_client(
    settings: Settings, cluster: bool, timeout: float, address_remap: Callable | None = None
) -> Any:
    kwargs = connection_kwargs(settings)
    kwargs.update(
        socket_timeout=timeout, socket_connect_timeout=timeout, client_name="closeup-ops-failover"
    )
    no_retry = Retry(NoBackoff(), 0)
    # the connection factory's own clients: REDIS_RESOLVE and TLS names apply here too
    if cluster:
        return cluster_client(settings, kwargs, address_remap, retry=no_retry)
    return standalone_client(settings, kwargs, settings.db, retry=no_retry)


def error_type(exc: BaseException) -> str:
    """A short name for what a client saw."""
    text = str(exc).upper()
    if isinstance(exc, rx.TimeoutError) or isinstance(exc, socket.timeout) or "TIMED OUT" in text:
        return "timeout"
    if isinstance(exc, rx.ReadOnlyError) or text.startswith("READONLY"):
        return "readonly"
    if isinstance(exc, rx.BusyLoadingError) or text.startswith("LOADING"):
        return "loading"
    if isinstance(exc, rx.AskError):
        return "ask"
    if isinstance(exc, rx.MovedError):
        return "moved"
    if isinstance(exc, rx.TryAgainError):
        return "tryagain"
    if isinstance(exc, rx.MasterDownError) or text.startswith("MASTERDOWN"):
        return "masterdown"
    if isinstance(exc, (rx.ClusterDownError, rx.SlotNotCoveredError)) or "CLUSTERDOWN" in text:
        return "clusterdown"
    if isinstance(exc, rx.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        return "auth"
    if isinstance(exc, (rx.ConnectionError, ConnectionError, OSError)):
        if "REFUSED" in text or "ERROR 111" in text:
            return "connection_refused"
        if "RESET BY PEER" in text or "ERROR 104" in text:
            return "connection_reset"
        if "CLOSED BY SERVER" in text or "BROKEN PIPE" in text or "ERROR 32" in text:
            return "connection_closed"
        if "NAME OR SERVICE" in text or "ERROR -2" in text or "ERROR -3" in text:
            return "dns"
        return "connection_error"
    if isinstance(exc, rx.ResponseError):
        return "error:" + (str(exc).split(" ", 1)[0] or "response").lower()
    if isinstance(exc, rx.RedisClusterException):
        return "cluster_error"
    return type(exc).__name__.lower()


class Probe:
    """One write + read-back per call to `attempt`; keeps every Attempt."""

    def __init__(
        self,
        client: Any,
        keys: KeySpace,
        cluster: bool,
        host: str,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.keys = keys
        self.cluster = cluster
        self.host = host
        self.clock = clock
        self.t0 = clock()
        self.started_at = datetime.datetime.now(datetime.timezone.utc)  # wall time of t0
        self.attempts: list[Attempt] = []
        self.slot = key_slot(keys.key(0).encode())
        self.node: str | None = None
        self.redirects = 0

    def now(self) -> float:
        return self.clock() - self.t0

    def start_clock(self) -> None:
        """Probe seconds count from now: a slow first answer before the run (the INFO that
        names the primary) takes nothing from --duration nor from --trigger-after."""
        self.t0 = self.clock()
        self.started_at = datetime.datetime.now(datetime.timezone.utc)

    def attempt(self, seq: int) -> Attempt:
        key, value = self.keys.key(seq), str(seq)
        start = self.clock()
        acked = ok = False
        error = None
        try:
            acked = bool(self.client.set(key, value, ex=self.keys.ttl))
            if not acked:
                error = "not_acknowledged"
            else:
                got = self.client.get(key)
                ok = got is not None and got.decode() == value
                error = None if ok else "read_mismatch"
        except Exception as exc:  # every failure is data here
            error = error_type(exc)
            self._reset()
        done = self.clock()
        result = Attempt(
            seq,
            round(start - self.t0, 4),
            round((done - start) * 1000, 3),
            acked,
            ok,
            error,
            self._serving_node(),
        )
        self.attempts.append(result)
        return result

    def _reset(self) -> None:
        """Drop connections so the next attempt dials (and resolves) the endpoint afresh."""
        if self.cluster:
            return  # the cluster client re-reads the topology after a connection error
        try:
            self.client.connection_pool.disconnect()
        except Exception:
            pass

    def _serving_node(self) -> str | None:
        if not self.cluster:
            return None
        try:
            node = self.client.nodes_manager.get_node_from_slot(self.slot)
        except Exception:
            return self.node
        name = f"{node.host}:{node.port}"
        if self.node is not None and name != self.node:
            self.redirects += 1
        self.node = name
        return name

    def identity(self, via: Any = None) -> NodeIdentity | None:
        """Who answers for the probe's key now: address and run id (None when unreachable).

        `via`: another client of the same endpoint to ask through instead of the probe's,
        e.g. the command's own, whose timeout is REDIS_TIMEOUT: the probe's short one is
        too short to wait for a first TLS handshake or SSH channel before the run."""
        client = self.client if via is None else via
        try:
            if self.cluster:
                node = client.nodes_manager.get_node_from_slot(self.slot)
                info = node.redis_connection.info("server")
                address = f"{node.host}:{node.port}"
            else:
                info = client.info("server")
                address = f"{_resolve(self.host)}:{info.get('tcp_port', '?')}"
        except Exception:
            return None
        engine = str(engine_of(info))
        return NodeIdentity(address, str(info.get("run_id", "?")), round(self.now(), 4), engine)


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def read_back(client: Any, keys: KeySpace, seqs: list[int], cluster: bool) -> list[int]:
    """The acknowledged sequence numbers whose key is gone (or holds another value)."""
    missing = []
    for i in range(0, len(seqs), READBACK_CHUNK):
        chunk = seqs[i : i + READBACK_CHUNK]
        names = [keys.key(s) for s in chunk]
        values = client.mget_nonatomic(names) if cluster else client.mget(names)
        for seq, value in zip(chunk, values, strict=True):
            if value is None or value.decode() != str(seq):
                missing.append(seq)
    return missing


def delete_keys(client: Any, keys: KeySpace, last_seq: int) -> None:
    """Best-effort clean-up (the TTL removes whatever this misses)."""
    for i in range(1, last_seq + 1, READBACK_CHUNK):
        names = [keys.key(s) for s in range(i, min(last_seq, i + READBACK_CHUNK - 1) + 1)]
        client.unlink(*names)
