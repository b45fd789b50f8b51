"""Helpers for the tunnel tests: bastion settings for an sshd fixture, a `closeup-ops tunnel`
held open in a subprocess, and waiting for its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CLOSEUP_OPS = str(Path(sys.executable).with_name("closeup-ops"))


def bastion_env(sshd, **more: str) -> dict[str, str]:
    env = {
        "BASTION_HOST": sshd.host,
        "BASTION_PORT": str(sshd.port),
        "BASTION_USER": sshd.user,
        "BASTION_KEY": str(sshd.client_key),
        "BASTION_KNOWN_HOSTS": str(sshd.known_hosts),
    }
    env.update(more)
    return env


class HeldTunnel:
    """`closeup-ops tunnel --json` in a subprocess: its JSON document, its stderr lines.
    `text=True`: without --json; `lines` is what it printed up to the export line, and the
    document holds only the exports read from that line."""

    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        prefix: list[str] | None = None,
        text: bool = False,
    ):
        full = dict(os.environ, **env)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*(prefix or []), CLOSEUP_OPS, "tunnel", *([] if text else ["--json"]), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full,
        )
        self.err_lines: list[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()
        self.doc = self._read_text() if text else self._read_doc()

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.err_lines.append(line.rstrip())

    def _read_doc(self, timeout: float = 60) -> dict:
        text = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                self.proc.wait(10)
                raise AssertionError(f"tunnel exited {self.proc.returncode}: {self.err_lines}")
            text += line
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                continue
        raise AssertionError("no JSON from the tunnel")

    def _read_text(self) -> dict:
        """Lines up to `export ...`, the last one printed before the tunnel holds."""
        while True:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                self.proc.wait(10)
                raise AssertionError(f"tunnel exited {self.proc.returncode}: {self.err_lines}")
            self.lines.append(line.rstrip())
            if line.startswith("export "):
                return {"exports": dict(w.split("=", 1) for w in line.split()[1:])}

    @property
    def port(self) -> int:
        return int(self.doc["exports"]["REDIS_PORT"])

    def wait_for_err(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err_lines):
                if needle in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in stderr: {self.err_lines}")

    def interrupt(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
