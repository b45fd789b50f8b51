"""What engine a running test server is, from the server binary itself: the program the
process was started as (first word of /proc/PID/cmdline, which both servers rewrite to
"PROGRAM HOST:PORT"; not /proc/PID/exe, as Debian's
redis-server is a link to redis-check-rdb, which answers by the name it is called) asked
`--version` ("Valkey server v=9.1.2 sha=..." -> "valkey 9.1.2"), independent of the code
under test."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from closeup_ops.local.servers import ENGINE_ENV


def binary_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    match = re.match(r"(\w+) server v=(\S+)", out.stdout)
    assert match, f"unexpected --version output from {binary}: {out.stdout!r}"
    return f"{match.group(1).lower()} {match.group(2)}"


def expected_engine(server) -> str:
    """'redis 7.0.15' / 'valkey 9.1.2' for a RedisProcess, from its own executable."""
    title = Path(f"/proc/{server.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return binary_version(title.split()[0])


def engine_asked() -> str:
    """The engine this test run is meant to be against (scripts/test's Valkey pass sets it)."""
    return os.environ.get(ENGINE_ENV) or "redis"
