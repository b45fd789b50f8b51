"""Helpers for the failover tests: clients for servers the test owns, waiting, probe keys,
an injector thread that runs the test's outage script beside the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from closeup_ops.local.servers import RedisProcess

PROBE_PREFIX = "closeup-ops:failover:"


def client_for(server: RedisProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def link_up(replica: RedisProcess) -> bool:
    return client_for(replica).info("replication").get("master_link_status") == "up"


def probe_keys(server: RedisProcess) -> set[bytes]:
    return set(client_for(server).scan_iter(match=PROBE_PREFIX + "*", count=1000))


class Injector(threading.Thread):
    """Runs the test's outage script beside the CLI; keeps its timings and any failure."""

    def __init__(self, script: Callable[[dict], None]):
        super().__init__(name="injector", daemon=True)
        self.script = script
        self.marks: dict = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.script(self.marks)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def result(self, timeout: float = 60) -> dict:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.marks


def events(doc: dict) -> dict[str, dict]:
    """The first timeline entry of each kind."""
    out: dict[str, dict] = {}
    for e in doc["timeline"]:
        out.setdefault(e["event"], e)
    return out
