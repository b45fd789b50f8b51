"""Local addresses of a tunnel: the plain forward of a standalone cache, and the bind rule.

Cluster-mode and TLS caches are served by the proxy (connect/tunnel/proxy.py), which
rewrites every node address the cache hands out to a local listener of its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOCAL = "127.0.0.1"


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
