"""The audit log of mutating actions: one JSON line per action (SPEC).

$XDG_STATE_HOME/closeup-ops/audit.log (default ~/.local/state/closeup-ops/audit.log):
time, user, host, command, target, result, details; secrets masked.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from closeup_ops.errors import scrub


def log_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "closeup-ops" / "audit.log"


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def record(command: str, target: str, result: str, **details: Any) -> dict[str, Any]:
    """Append one line; returns it. A log that cannot be written is a warning, not a failure
    of the action that already happened."""
    user, _, host = actor().partition("@")
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "user": user,
        "host": host,
        "command": command,
        "target": target,
        "result": result,
        **details,
    }
    line = scrub(json.dumps(entry, default=str, separators=(",", ":")))
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as exc:
        sys.stderr.write(f"closeup-ops: warning: cannot write the audit log {path}: {exc}\n")
    return json.loads(line)


def read_entries(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or log_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
