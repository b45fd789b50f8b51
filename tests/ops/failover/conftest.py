"""Fixtures for failover tests: servers these tests own (and kill), a TCP proxy that plays the
endpoint's DNS switch, an HTTP health endpoint the test controls, and an injector thread.

Nothing here touches the shared session fixtures: every server is started in this test's
tmp dir and stopped by PID.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.failover import client_for, link_up, wait_until
from helpers.tcpproxy import TcpProxy

from closeup_ops.local.cluster import start_cluster
from closeup_ops.local.servers import RedisProcess, start_redis


@dataclass
class Pair:
    """A primary and a replica the test owns, the replica linked directly or via `repl`."""

    primary: RedisProcess
    replica: RedisProcess
    endpoint: TcpProxy  # what the tool connects to
    repl: TcpProxy | None = None  # the replication link, when the test needs to cut it
    servers: list[RedisProcess] = field(default_factory=list)

    def env(self, **more: str) -> dict[str, str]:
        env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.endpoint.port)}
        env.update(more)
        return env


def _pair(tmp_path: Path, via_repl_proxy: bool) -> Pair:
    primary = start_redis(tmp_path / "primary", "--repl-diskless-sync-delay", "0")
    repl = TcpProxy(("127.0.0.1", primary.port)).start() if via_repl_proxy else None
    upstream = repl.port if repl else primary.port
    replica = start_redis(
        tmp_path / "replica", "--replicaof", "127.0.0.1", str(upstream), "--repl-timeout", "60"
    )
    wait_until(lambda: link_up(replica), "the replica to sync")
    # The link is "up" before the primary streams to the replica (it waits for the first
    # ACK); a write seen on the replica shows the stream flows.
    client_for(primary).set("failover-test:sentinel", "1")
    wait_until(lambda: client_for(replica).get("failover-test:sentinel") == b"1", "streaming")
    endpoint = TcpProxy(("127.0.0.1", primary.port)).start()
    return Pair(primary, replica, endpoint, repl, [primary, replica])


@pytest.fixture
def pair(tmp_path):
    p = _pair(tmp_path, via_repl_proxy=False)
    yield p
    _teardown(p)


@pytest.fixture
def pair_via_repl_proxy(tmp_path):
    p = _pair(tmp_path, via_repl_proxy=True)
    yield p
    _teardown(p)


def _teardown(p: Pair) -> None:
    p.endpoint.stop()
    if p.repl:
        p.repl.stop()
    for server in p.servers:
        server.stop()  # SIGCONT first, then SIGTERM, by PID


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory):
    """A 3-primary cluster with a replica each that the failover tests may fail over."""
    cluster = start_cluster(tmp_path_factory.mktemp("failover-cluster"), 3, 1)

    def replicas_synced() -> bool:
        roles = [client_for(n).info("replication") for n in cluster.nodes]
        replicas = [r for r in roles if r["role"] == "slave"]
        return len(replicas) == 3 and all(r["master_link_status"] == "up" for r in replicas)

    wait_until(replicas_synced, "three synced replicas")
    yield cluster
    cluster.stop()


class HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        code = self.server.status_code  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def health_server():
    """A local HTTP health endpoint; set `.status_code` to change what it answers."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler)
    server.status_code = 200  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/health"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()
