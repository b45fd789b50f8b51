"""Helpers for the triage tests: run it, read its findings, wait on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable

from helpers.common import server_env

FAST = ("--json", "--no-aws", "--interval", "0.5", "--timeout", "5")


def triage(cli, server, *args: str, env: dict[str, str] | None = None):
    """(result, document) of `triage --json` against a fixture server."""
    r = cli("triage", *FAST, *args, env={**server_env(server), **(env or {})})
    return r, (r.json() if r.out.strip().startswith("{") else None)


def findings(doc) -> dict[str, dict]:
    return {f["id"]: f for f in doc["findings"]}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
