"""Which engine a server runs, from its INFO server section: `valkey 8.0.2`, `redis 7.0.15`.

Valkey reports `server_name:valkey` and `valkey_version`, and keeps `redis_version` at the
Redis OSS release it is compatible with (7.2.4), so `redis_version` alone would call a Valkey
8 cache "Redis 7.2.4". Redis OSS has neither field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Engine:
    name: str  # "valkey" or "redis" (whatever server_name says, lower-cased)
    version: str  # "?" when INFO does not say (e.g. a server that hides INFO server)

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def engine_of(info: Mapping[str, Any]) -> Engine:
    """The engine and its own version from INFO server (or a merged INFO)."""
    name = str(info.get("server_name") or "").strip().lower()
    if not name:
        name = "valkey" if info.get("valkey_version") else "redis"
    version = info.get(f"{name}_version") or info.get("redis_version") or "?"
    return Engine(name, str(version))
