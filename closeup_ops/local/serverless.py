"""A stand-in for an ElastiCache Serverless cache, for `closeup-ops sandbox up --serverless`.

What a client meets on a real serverless endpoint, on this machine:
- an endpoint name in the serverless form (demo-sbx1a2.serverless.use1.cache.amazonaws.com)
  that the client dials through REDIS_RESOLVE (like curl's --resolve), no /etc/hosts edit;
- TLS only, with a certificate for that name from a throwaway CA;
- cluster mode: one primary owning all 16384 slots, announcing itself by the endpoint name
  (cluster-announce-hostname + cluster-preferred-endpoint-type hostname), as serverless does;
- a reader port: a cluster replica on a second TLS port (it stands for 6380);
- an ACL user with a password, the default user switched off;
- KEYS refused (renamed away), as on serverless, and ElastiCache's restricted commands
  (CONFIG, DEBUG, SAVE, SHUTDOWN, ...).

The password lives in each node's config file (mode 600), never on a command line.
"""

from __future__ import annotations

import re
import secrets
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.cluster import free_cluster_port
from closeup_ops.local.servers import LOOPBACK, TLSFiles, redis_server_binary, tls_args

USERNAME = "closeup-app"
# What ElastiCache refuses on every cache (AWS docs, "Restricted commands"); KEYS too here,
# as the SPEC says of serverless.
RESTRICTED = (
    "BGREWRITEAOF", "BGSAVE", "CONFIG", "DEBUG", "MIGRATE",
    "REPLICAOF", "SAVE", "SLAVEOF", "SHUTDOWN", "SYNC",
)  # fmt: skip


@dataclass
class Node:
    role: str  # "serverless-primary" | "serverless-reader"
    port: int
    pid: int
    workdir: Path


@dataclass
class ServerlessStandIn:
    cache: str  # the cache's name in AWS
    endpoint: str  # the endpoint name
    port: int  # primary (stands for 6379)
    reader_port: int  # replica (stands for 6380)
    address: str  # where the name points (REDIS_RESOLVE)
    username: str
    password: str = field(repr=False)
    tls: TLSFiles = field(repr=False)
    nodes: list[Node] = field(default_factory=list)
    version: tuple[int, int] = (7, 0)  # the server's; below 7.0 no hostname is announced

    @property
    def announces_name(self) -> bool:
        return self.version >= (7, 0)

    @property
    def resolve(self) -> str:
        """The REDIS_RESOLVE value: both ports of the endpoint name -> the address."""
        return ",".join(f"{self.endpoint}:{p}:{self.address}" for p in self.ports)

    @property
    def ports(self) -> list[int]:
        return [self.port, self.reader_port]

    def client(self, port: int | None = None) -> Any:
        """A plain redis-py client on one node (for seeding and set-up, not the tool)."""
        import redis

        return redis.Redis(
            host=self.address,
            port=port or self.port,
            username=self.username,
            password=self.password,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca),
            ssl_check_hostname=False,
            socket_timeout=10,
        )


def endpoint_name(cache: str, region_code: str = "use1") -> str:
    """`demo-sbx1a2.serverless.use1.cache.amazonaws.com`: the cache name, a random id."""
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))
    return f"{cache}-{suffix}.serverless.{region_code}.cache.amazonaws.com"


def server_version(binary: str) -> tuple[int, int]:
    """(major, minor) from `redis-server --version` ("... v=7.0.15 ..."); (0, 0) unknown."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    match = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _config(
    stand_in: ServerlessStandIn,
    workdir: Path,
    port: int,
    binds: list[str],
    replica: bool,
    version: tuple[int, int] = (7, 0),
    announce_ip: str | None = None,
) -> Path:
    lines = [
        f"bind {' '.join(binds)}",
        "protected-mode no",
        'save ""',
        "appendonly no",
        f"dir {workdir}",
        f"logfile {workdir / 'redis.log'}",
        "daemonize no",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        "cluster-node-timeout 1000",
        "user default off",
        # &* (every pub/sub channel) exists from 6.2; before, channels are all allowed
        f"user {stand_in.username} on >{stand_in.password} ~* "
        + ("&* " if version >= (6, 2) else "")
        + "+@all",
        # the replica logs in to the primary as the same user
        f"masteruser {stand_in.username}",
        f"masterauth {stand_in.password}",
        'rename-command KEYS ""',
        *[f'rename-command {name} ""' for name in RESTRICTED],
        "repl-diskless-sync-delay 0",
    ]
    if version >= (7, 0):  # older servers cannot announce a name: CLUSTER SLOTS says an IP
        lines += [
            f"cluster-announce-hostname {stand_in.endpoint}",
            "cluster-preferred-endpoint-type hostname",
        ]
    elif announce_ip:
        lines.append(f"cluster-announce-ip {announce_ip}")
    if replica:
        lines.append("replica-read-only yes")
    # tls_args is written for a command line ("--flag", "value" pairs)
    args = tls_args(stand_in.tls, port)
    lines += [f"{args[i][2:]} {args[i + 1]}" for i in range(0, len(args), 2)]
    path = workdir / "redis.conf"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _spawn_node(config: Path, workdir: Path, prefix: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, redis_server_binary(), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=workdir,
    )


def _wait_ready(proc: subprocess.Popen, workdir: Path) -> None:
    log = workdir / "redis.log"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            raise RuntimeError(f"serverless stand-in node exited: {tail}")
        if log.exists() and "Ready to accept connections" in log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("serverless stand-in node not ready after 15 s")


def start_serverless(
    workdir: Path,
    endpoint: str,
    cache: str = "demo",
    address: str = LOOPBACK,
    extra_binds: tuple[str, ...] = (),
    on_start: Callable[[Node], None] | None = None,
) -> ServerlessStandIn:
    """Start the primary and the reader, join them, wait until the replica is in sync.

    `on_start` (when given) is called with each node as soon as its process exists, before
    it is ready, so a caller can record it (and stop it when a later step fails, or when
    the caller is killed while the node starts: it runs in a session of its own)."""
    workdir = Path(workdir)
    tls = make_tls_files(workdir / "tls", names=(endpoint,), ips=(LOOPBACK, *extra_binds), days=90)
    stand_in = ServerlessStandIn(
        cache=cache,
        endpoint=endpoint,
        port=free_cluster_port(),
        reader_port=0,
        address=address,
        username=USERNAME,
        password=secrets.token_urlsafe(18),
        tls=tls,
        version=server_version(redis_server_binary()),
    )
    stand_in.reader_port = free_cluster_port()
    while stand_in.reader_port == stand_in.port:
        stand_in.reader_port = free_cluster_port()
    nodes: list[Node] = []
    binds = [LOOPBACK, *extra_binds]
    for role, port in (
        ("serverless-primary", stand_in.port),
        ("serverless-reader", stand_in.reader_port),
    ):
        node_dir = workdir / role
        node_dir.mkdir(parents=True, exist_ok=True)
        config = _config(
            stand_in,
            node_dir,
            port,
            binds,
            replica=role.endswith("reader"),
            version=stand_in.version,
            announce_ip=extra_binds[0] if extra_binds else None,
        )
        proc = _spawn_node(config, node_dir, [])
        nodes.append(Node(role, port, proc.pid, node_dir))
        if on_start:
            on_start(nodes[-1])
        _wait_ready(proc, node_dir)
    stand_in.nodes = nodes
    _form_cluster(stand_in)
    return stand_in


def _form_cluster(s: ServerlessStandIn) -> None:
    primary, reader = s.client(s.port), s.client(s.reader_port)
    try:
        primary.execute_command("CLUSTER", "ADDSLOTS", *range(16384))  # ADDSLOTSRANGE: 7.0+
        reader.execute_command("CLUSTER", "MEET", LOOPBACK, str(s.port))
        primary_id = primary.execute_command("CLUSTER", "MYID")
        primary_id = primary_id.decode() if isinstance(primary_id, bytes) else primary_id

        def known() -> bool:
            nodes = reader.execute_command("CLUSTER", "NODES")
            text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            return primary_id in text

        _wait(known, "the reader to meet the primary")
        reader.execute_command("CLUSTER", "REPLICATE", primary_id)
        _wait(lambda: _cluster_ok(primary) and _cluster_ok(reader), "cluster state ok")
        _wait(
            lambda: reader.info("replication").get("master_link_status") == "up",
            "the reader to sync",
        )
        # The primary names its replica in CLUSTER SLOTS once the replica reports a
        # non-zero replication offset: a write (undone at once) gets there in milliseconds
        # instead of the next replication ping (10 s).
        primary.set("closeup-ops:sandbox:ready", "1")
        primary.delete("closeup-ops:sandbox:ready")
        _wait(lambda: len(primary.execute_command("CLUSTER", "SLOTS")[0]) >= 4, "topology")
    finally:
        primary.close()
        reader.close()


def _cluster_ok(client: Any) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


def _wait(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not ready yet: a node still loading, a link still down
            pass
        time.sleep(0.05)
    raise RuntimeError(f"serverless stand-in: timed out waiting for {what}")
