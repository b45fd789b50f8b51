"""What a local client gets from a tunnel: the plain forward of a standalone cache, the bind
rule, the REDIS_* variables (export lines, a `tunnel -- CMD` child's environment), a
serverless cache's reader endpoint, and room for many connections (the open-files limit).

Cluster-mode and TLS caches are served by the proxy (connect/tunnel/proxy.py), which
rewrites every node address the cache hands out to a local listener of its own.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

LOCAL = "127.0.0.1"
CLUSTER_HINT = "cluster mode: use a cluster client (redis-cli -c, RedisCluster, ...)"
# What a child of `tunnel -- CMD` must not inherit behind the proxy, which speaks TLS
# upstream (the local side is plain TCP) and, when the tunnel holds them, sends the
# credentials (none are needed locally; without them the client's own AUTH passes through).
UPSTREAM_TLS = ("REDIS_CA_CERT", "REDIS_TLS_SERVER_NAME")
UPSTREAM_AUTH = ("REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_IAM_AUTH")


@dataclass(frozen=True)
class Forward:
    """bind:local_port on this machine -> remote_host:remote_port seen from the bastion."""

    remote_host: str
    remote_port: int
    local_port: int
    bind: str = LOCAL

    @property
    def remote(self) -> str:
        return f"{self.remote_host}:{self.remote_port}"

    @property
    def local(self) -> str:
        return f"{self.bind}:{self.local_port}"

    def ssh_spec(self) -> str:
        host = f"[{self.remote_host}]" if ":" in self.remote_host else self.remote_host
        bind = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{bind}:{self.local_port}:{host}:{self.remote_port}"


def is_loopback(bind: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: reachable from this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def client_host(bind: str) -> str:
    """The address a client on this machine dials for a listener bound to `bind`."""
    if bind in ("0.0.0.0", "::", "localhost", ""):
        return LOCAL
    return bind


def exports(tunnel: Any) -> dict[str, str]:
    """The REDIS_* variables that point a client at the tunnel (printed and given to CMD):
    at the --announce name when there is one (the name the clients reach this machine by:
    the same one the proxy writes into its replies). Never a password: behind the proxy the
    tunnel authenticates; through a plain forward the app keeps its own."""
    host, port = tunnel.announce_host or tunnel.host, tunnel.local_port
    url_host = f"[{host}]" if ":" in host else host
    out = {
        "REDIS_HOST": host,
        "REDIS_PORT": str(port),
        "REDIS_TLS": "false",  # the local side is plain TCP; TLS is the tunnel's business
        "REDIS_URL": f"redis://{url_host}:{port}",
    }
    if tunnel.cluster:
        out["REDIS_CLUSTER"] = "true"
    if tunnel.reader_port:  # serverless: its reader endpoint (AWS: 6380)
        out["REDIS_READER_PORT"] = str(tunnel.reader_port)
    return out


def child_env(tunnel: Any, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `tunnel -- CMD`: REDIS_* pointed at the tunnel. Behind the proxy
    the child needs no TLS settings, nor credentials the tunnel holds (and gets none: the
    tunnel does both); it keeps its own when the tunnel has none (they pass through)."""
    env = dict(os.environ if base is None else base)
    env.pop("BASTION_HOST", None)
    env.pop("CLOSEUP_OPS_ADDRESS_MAP", None)  # set by closeup-ops before the proxy existed
    if tunnel.proxied:
        s = tunnel.settings
        for var in UPSTREAM_TLS + (UPSTREAM_AUTH if s.password or s.iam_auth else ()):
            env.pop(var, None)
        if s.iam_auth:
            env["REDIS_IAM_AUTH"] = "false"  # beats a REDIS_IAM_AUTH=true in a .env file
    env.update(exports(tunnel))
    return env


def reader_in(slots: Any, host: str, port: int) -> int | None:
    """The port of a serverless cache's reader endpoint in its CLUSTER SLOTS answer (as
    redis-py returns it, a list or a dict): a node with the endpoint's own name and another
    port. None when there is none."""
    want = host.lower().rstrip(".")
    if isinstance(slots, dict):  # {(start, end): {"primary": (h, p), "replicas": [...]}}
        nodes = [n for v in slots.values() for n in [v.get("primary"), *v.get("replicas", [])]]
    else:  # [[start, end, [host, port, id, ...], ...], ...]
        nodes = [n for entry in slots or [] for n in entry[2:]]
    for node in nodes:
        if not node or len(node) < 2:
            continue
        names = [node[0]]
        meta = node[3] if len(node) > 3 else None  # {hostname: ..., ip: ...}, or flat
        if isinstance(meta, dict):
            names += [v for k, v in meta.items() if k in (b"hostname", "hostname")]
        elif isinstance(meta, list):
            names += [
                meta[i + 1]
                for i in range(0, len(meta) - 1, 2)
                if meta[i] in (b"hostname", "hostname")
            ]
        for name in names:
            text = name.decode() if isinstance(name, bytes) else str(name)
            if text.lower().rstrip(".") == want and int(node[1]) != port:
                return int(node[1])
    return None


OPEN_FILES = 65536  # what the tunnel asks for: 2 per proxied connection, 1 in ssh


def more_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft limit on open files towards `wanted` (never above the hard
    limit, never lowered), as redis-server does for its clients: macOS starts at 256 and a
    connection pool per service (go-redis: 10 per core per node) would hit EMFILE. Returns
    the soft limit in force; where it cannot be changed, the old one."""
    try:
        import resource
    except ImportError:  # not on a POSIX system
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    # macOS refuses more than OPEN_MAX (10240) even under an unlimited hard limit
    for value in (target, min(target, 10240)):
        if soft == resource.RLIM_INFINITY or soft >= value:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
            return value
        except (ValueError, OSError):
            continue
    return soft
