"""A real Redis (or Valkey) cluster of local processes: `primaries` primaries with
`replicas` replicas each, all slots covered, on free loopback port pairs (client port and
cluster bus port), stopped by PID. Used by the test fixtures, the benchmarks and
`closeup-ops sandbox`; single servers are in servers.py."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from closeup_ops.local.servers import (
    LOOPBACK,
    RedisProcess,
    TLSFiles,
    redis_cli,
    start_redis,
    wait_for,
)


def free_cluster_port(host: str = LOOPBACK) -> int:
    """A free port <= 55535 whose cluster bus port (+10000) is free too."""
    import random

    for _ in range(500):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((host, port))
                b.bind((host, port + 10000))
        except OSError:
            continue
        if port != 6379:
            return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Cluster:
    nodes: list[RedisProcess]

    @property
    def entry(self) -> RedisProcess:
        return self.nodes[0]

    def primaries(self) -> list[RedisProcess]:
        out = []
        for node in self.nodes:
            if node.alive() and "role:master" in redis_cli(node, "INFO", "replication"):
                out.append(node)
        return out

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    workdir: Path,
    primaries: int = 3,
    replicas: int = 1,
    *extra: str,
    detach: bool = False,
    tls: TLSFiles | None = None,
    hostnames: list[str] | None = None,
    preferred_endpoint: str | None = None,
    engine: str | None = None,
    bind: str = "127.0.0.1",
) -> Cluster:
    """A cluster of `primaries` primaries with `replicas` replicas each, all slots covered.

    `tls`: TLS only (clients, replication and cluster bus); `hostnames`: one name per node,
    announced with `cluster-announce-hostname` (as ElastiCache does with in-transit
    encryption); `preferred_endpoint` ("ip", "hostname", "unknown-endpoint"): what CLUSTER
    SLOTS and -MOVED name first; `engine` and `bind` (::1: an IPv6 cluster) as for
    start_redis."""
    nodes = []
    try:
        for i in range(primaries * (1 + replicas)):
            named: list[str] = []
            if hostnames:
                named += ["--cluster-announce-hostname", hostnames[i]]
            if preferred_endpoint:
                named += ["--cluster-preferred-endpoint-type", preferred_endpoint]
            nodes.append(
                start_redis(
                    Path(workdir) / f"node{i}",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1500",
                    "--cluster-replica-validity-factor",
                    "0",
                    # the replication offset moves (and replicas show in CLUSTER SLOTS)
                    # within a second of the cluster's creation, not after 10 s
                    "--repl-ping-replica-period",
                    "1",
                    "--repl-diskless-sync-delay",
                    "0",
                    *named,
                    *extra,
                    port=free_cluster_port(),
                    detach=detach,
                    tls=tls,
                    engine=engine,
                    bind=bind,
                )
            )
        cmd = [
            "redis-cli",
            "--cluster",
            "create",
            *[n.address for n in nodes],
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ]
        if tls:
            cmd[1:1] = ["--tls", "--cacert", str(tls.ca)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"cluster create failed: {out.stdout[-500:]} {out.stderr}")
        cluster = Cluster(nodes)
        wait_for(
            lambda: all("cluster_state:ok" in redis_cli(n, "CLUSTER", "INFO") for n in nodes),
            "cluster state ok",
        )
        wait_for(lambda: all(_replica_synced(n) for n in nodes), "cluster replicas to sync")
        # Every node's CLUSTER SLOTS names every replica (gossip lags the replication
        # link): clients that read the map at once see the whole topology.
        wait_for(
            lambda: all(_slots_list_replicas(n, replicas) for n in nodes),
            "every node to list the replicas",
        )
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _slots_list_replicas(node: RedisProcess, replicas: int) -> bool:
    """CLUSTER SLOTS on `node` names `replicas` replicas for every range (a replica shows
    there once the node has heard of its replication offset)."""
    import redis

    tls = {"ssl": True, "ssl_cert_reqs": "none"} if node.tls else {}  # a readiness probe
    client = redis.Redis(host=node.host, port=node.port, password=node.password, **tls)
    try:
        ranges = client.execute_command("CLUSTER SLOTS")
    except redis.RedisError:
        return False
    finally:
        client.close()
    if isinstance(ranges, dict):  # redis-py's parsed form: {(start, end): {...}}
        return bool(ranges) and all(len(v.get("replicas", [])) == replicas for v in ranges.values())
    return bool(ranges) and all(len(r) - 3 == replicas for r in ranges)


def _replica_synced(node: RedisProcess) -> bool:
    info = redis_cli(node, "INFO", "replication")
    return "role:master" in info or "master_link_status:up" in info
