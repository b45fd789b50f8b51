"""Seeded key sets for the keys/ttl tests: the guide's key shapes under a unique prefix,
written the same way to a standalone server and to the cluster, and removed afterwards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

OTP = 30  # <prefix>:otp:<id>             TTL 300
VIDEO = 20  # <prefix>:video:pending:<id> TTL 1800
USERS = 25  # <prefix>:user:verified:<id> no TTL


def client_for(server) -> redis.Redis | RedisCluster:
    """A redis-py client for a fixture: a Cluster (has .entry) or a single server."""
    if hasattr(server, "entry"):
        return RedisCluster(host=server.entry.host, port=server.entry.port)
    return redis.Redis(host=server.host, port=server.port)


def unique_prefix(tag: str = "k3") -> str:
    return f"{tag}{uuid.uuid4().hex[:8]}"


@dataclass
class Seeded:
    prefix: str
    client: object

    @property
    def pattern(self) -> str:
        return f"{self.prefix}:*"

    def keys(self, part: str = "") -> set[str]:
        return {k.decode() for k in self.client.scan_iter(f"{self.prefix}:{part}*", count=1000)}

    def cleanup(self) -> None:
        for key in list(self.client.scan_iter(f"{self.prefix}:*", count=1000)):
            self.client.delete(key)
        self.client.close()


def seed(server, prefix: str | None = None) -> Seeded:
    client = client_for(server)
    prefix = prefix or unique_prefix()
    pipe = client.pipeline(transaction=False)
    for i in range(OTP):
        pipe.set(f"{prefix}:otp:{i}", f"{100000 + i}", ex=300)
    for i in range(VIDEO):
        pipe.set(f"{prefix}:video:pending:{i}", f"job-{i}", ex=1800)
    for i in range(USERS):
        pipe.set(f"{prefix}:user:verified:{i}", "1")
    pipe.execute()
    return Seeded(prefix, client)


def fill(client, pattern: str, n: int, value: str = "v", ttl: int | None = None) -> None:
    """n keys named pattern.format(i), pipelined."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(pattern.format(i), value, ex=ttl)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
