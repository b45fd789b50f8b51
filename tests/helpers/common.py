"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (like a black-holed
    security group); yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
