"""The one Redis connection factory: plain, password, ACL, TLS (with a separate server name
for tunnels), IAM tokens, and cluster mode (auto-detected, forced for serverless)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.connection import SSLConnection

from closeup_ops import errors, output
from closeup_ops.errors import UsageError
from closeup_ops.settings import Settings

AddressRemap = Callable[[tuple[str, int]], tuple[str, int]]


class NamedSSLConnection(SSLConnection):
    """SSLConnection that checks the certificate (and sends SNI) for `ssl_server_name`
    instead of the address it dials: through a tunnel we dial 127.0.0.1 but the
    certificate names the real endpoint. Subclassed per name (see _ssl_class) because
    redis-py's cluster client drops unknown keyword arguments."""

    ssl_server_name: str | None = None

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        if not self.ssl_server_name or self.ssl_server_name == self.host:
            return super()._wrap_socket_with_ssl(sock)
        dialled = self.host
        self.host = self.ssl_server_name
        try:
            return super()._wrap_socket_with_ssl(sock)
        finally:
            self.host = dialled


def _ssl_class(server_name: str) -> type[NamedSSLConnection]:
    return type("NamedSSLConnection", (NamedSSLConnection,), {"ssl_server_name": server_name})


@dataclass
class RedisTarget:
    """A connected cache: the client plus what we learned while connecting."""

    client: Any  # redis.Redis or redis.cluster.RedisCluster
    cluster: bool
    tls: bool
    endpoint: str
    settings: Settings

    def primaries(self) -> list[tuple[str, redis.Redis]]:
        """(address, client) for every primary: one in standalone mode."""
        if not self.cluster:
            return [(self.endpoint, self.client)]
        out = []
        for node in self.client.get_primaries():
            out.append((f"{node.host}:{node.port}", node.redis_connection))
        return sorted(out)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing is best effort
            pass


def warn_insecure() -> None:
    """The one line said when TLS to the cache skips certificate verification (--insecure):
    by a direct connection, and once by a tunnel whose proxy does TLS for its clients."""
    output.warn("--insecure: the server certificate is NOT verified")


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by standalone and cluster clients (no host/port)."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.timeout,
        "socket_timeout": settings.timeout,
        **_credentials(settings),
        "client_name": "closeup-ops",
    }
    if settings.use_tls:
        kwargs.update(
            connection_class=_ssl_class(settings.server_name),
            ssl_ca_certs=settings.ca_cert,
            ssl_cert_reqs="none" if settings.insecure else "required",
            ssl_check_hostname=not settings.insecure,
        )
    return kwargs


def _credentials(settings: Settings) -> dict[str, Any]:
    """username/password, or with REDIS_IAM_AUTH a credential_provider that signs a fresh
    IAM token for every new connection (a token is good for 15 minutes; `tunnel`,
    `stats --watch` and `failover-test` reconnect long after that)."""
    if settings.iam_auth:
        from closeup_ops.connect.iam import iam_provider

        return {"credential_provider": iam_provider(settings)}
    password = settings.password.reveal() if settings.password else None
    return {"username": settings.username, "password": password}


def standalone_client(
    settings: Settings, kwargs: dict[str, Any], db: int, **extra: Any
) -> redis.Redis:
    """A client of the endpoint itself (REDIS_RESOLVE applied); `extra` goes to its pool."""
    host, port = settings.dial(settings.host, settings.port)  # REDIS_RESOLVE
    pool_kwargs = dict(kwargs, host=host, port=port, db=db, **extra)
    pool_kwargs.setdefault("connection_class", redis.Connection)
    return redis.Redis(connection_pool=redis.ConnectionPool(**pool_kwargs))


def cluster_client(
    settings: Settings, kwargs: dict[str, Any], address_remap: AddressRemap | None, **extra: Any
) -> RedisCluster:
    """A cluster client from the endpoint (REDIS_RESOLVE applied to every node it finds)."""
    # The url= form makes redis-py build each node's pool from our kwargs, keeping our
    # connection class (TLS server name) for every node it discovers.
    host, port = settings.dial(settings.host, settings.port)  # REDIS_RESOLVE
    return RedisCluster(
        url=f"redis://{f'[{host}]' if ':' in host else host}:{port}",
        address_remap=_with_resolve(settings, address_remap),
        require_full_coverage=False,
        **kwargs,
        **extra,
    )


def _with_resolve(settings: Settings, remap: AddressRemap | None) -> AddressRemap | None:
    """The caller's remap (a tunnel's node map) first, then REDIS_RESOLVE for the node
    names CLUSTER SLOTS announces."""
    if not settings.resolve:
        return remap

    def both(address: tuple[str, int]) -> tuple[str, int]:
        mapped = remap(address) if remap else address
        return mapped if mapped != address else settings.dial(*address)

    return both


def connect(
    settings: Settings,
    *,
    address_remap: AddressRemap | None = None,
    check: bool = True,
) -> RedisTarget:
    """Connect per settings. Cluster mode: forced by REDIS_CLUSTER or a serverless endpoint,
    else asked of the server with INFO cluster. Raises OpsError subclasses."""
    errors.CONTEXT.update(
        endpoint=settings.endpoint, timeout=settings.timeout, tls=settings.use_tls
    )
    if settings.insecure and settings.use_tls:
        warn_insecure()
    kwargs = connection_kwargs(settings)
    cluster = settings.cluster
    if cluster is None and settings.serverless:
        cluster = True
    try:
        if cluster is None:
            probe = standalone_client(settings, kwargs, db=0)
            info = probe.info("cluster")
            cluster = bool(int(info.get("cluster_enabled", 0)))
            if not cluster:
                if settings.db:
                    probe.close()
                    probe = standalone_client(settings, kwargs, db=settings.db)
                    if check:
                        probe.ping()
                return RedisTarget(probe, False, settings.use_tls, settings.endpoint, settings)
            probe.close()
        if cluster:
            _refuse_db_in_cluster(settings)
            client = cluster_client(settings, kwargs, address_remap)
        else:
            client = standalone_client(settings, kwargs, db=settings.db)
            if check:
                client.ping()
    except UsageError:
        raise
    except redis.RedisError as exc:
        raise errors.classify(exc, settings.endpoint) from None
    return RedisTarget(client, cluster, settings.use_tls, settings.endpoint, settings)


def _refuse_db_in_cluster(settings: Settings) -> None:
    if settings.db != 0:
        raise UsageError(
            f"REDIS_DB={settings.db} but {settings.endpoint} runs in cluster mode, "
            "which has only database 0 (SELECT is refused)",
            "unset REDIS_DB or set REDIS_DB=0",
        )
