"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass

PASSWORD = "s3cret-Pass-42"
ACL_USER = "app"
ACL_PASSWORD = "acl-Pa55-word-99"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self):
        return json.loads(self.out)


def server_env(server, **more: str) -> dict[str, str]:
    """REDIS_HOST/REDIS_PORT for a fixture server, plus more variables."""
    env = {"REDIS_HOST": server.host, "REDIS_PORT": str(server.port)}
    env.update(more)
    return env
