"""Local addresses of a tunnel: the plain forward of a standalone cache, and the bind rule.

Cluster-mode and TLS caches are served by the proxy (connect/tunnel/proxy.py), which
rewrites every node address the cache hands out to a local listener of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOCAL = "127.0.0.1"
ENV_MAP = "CLOSEUP_OPS_ADDRESS_MAP"


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


# Still read by connect/redis.py until its remap_from_env call goes (the proxy made it moot).
def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nodes_from_slots(reply: Any, entry: tuple[str, int]) -> list[tuple[str, int]]:
    """Every node (primaries and replicas) named in a raw CLUSTER SLOTS reply.

    An empty or "?" host means "the address you asked" (the entry endpoint)."""
    seen: list[tuple[str, int]] = []
    for slot_range in reply or []:
        for node in list(slot_range)[2:]:
            host, port = _text(node[0]), int(node[1])
            if host in ("", "?"):
                host = entry[0]
            if (host, port) not in seen:
                seen.append((host, port))
    return seen


def discover_nodes(client: Any, entry: tuple[str, int]) -> list[tuple[str, int]] | None:
    """The cluster's nodes through the first forward, or None for a standalone server."""
    import redis

    try:
        reply = client.execute_command("CLUSTER", "SLOTS")
    except redis.ResponseError as exc:
        if "cluster support disabled" in str(exc).lower() or "unknown" in str(exc).lower():
            return None
        raise
    return nodes_from_slots(reply, entry)


def remapper(forwards: list[Forward]) -> Callable[[tuple[str, int]], tuple[str, int]]:
    """redis-py address_remap: a node's address -> its local forward (others unchanged)."""
    table = {(f.remote_host, f.remote_port): (LOCAL, f.local_port) for f in forwards}

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        host, port = address
        return table.get((_text(host), int(port)), (host, port))

    return remap


def encode_map(forwards: list[Forward]) -> str:
    """For a child process: `host:port=127.0.0.1:local,...` (CLOSEUP_OPS_ADDRESS_MAP)."""
    return ",".join(f"{f.remote}={f.local}" for f in forwards)


def decode_map(text: str) -> list[Forward]:
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        remote, _, local = item.partition("=")
        rhost, _, rport = remote.rpartition(":")
        _, _, lport = local.rpartition(":")
        if rhost and rport.isdigit() and lport.isdigit():
            out.append(Forward(rhost.strip("[]"), int(rport), int(lport)))
    return out


def remap_from_env(environ: Any = None) -> Callable[[tuple[str, int]], tuple[str, int]] | None:
    """The address remap `closeup-ops tunnel -- CMD` hands to a closeup-ops child, if any."""
    import os

    text = (environ if environ is not None else os.environ).get(ENV_MAP, "")
    forwards = decode_map(text)
    return remapper(forwards) if forwards else None
