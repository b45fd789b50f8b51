"""What `sandbox up` started, kept in a state file, and how `down` stops exactly that.

Every process is recorded with its PID and command line; `down` stops a PID only while it
still runs that command line (PIDs get reused), its children first (sshd's sessions), then
deletes the network namespace it made, if any.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from closeup_ops.local.servers import LOOPBACK


@dataclass
class SandboxProcess:
    role: str
    pid: int
    port: int
    cmdline: str
    host: str = LOOPBACK  # where it listens (status checks connect there)
    # the kernel's start time of the process (clock ticks since boot): with the PID, it
    # names one process for good, where the command line can change (sshd retitles itself)
    start_ticks: int = 0


@dataclass
class Sandbox:
    directory: str
    started: str
    processes: list[SandboxProcess]
    exports: dict[str, str]
    aws: dict[str, Any] = field(default_factory=dict)
    cluster_entry: str | None = None
    # exported variables whose value stays in a file (mode 600): never printed
    secret_files: dict[str, str] = field(default_factory=dict)
    replicated: dict[str, str] = field(default_factory=dict)  # primary / replica addresses
    serverless: dict[str, Any] = field(default_factory=dict)
    bastion: dict[str, Any] = field(default_factory=dict)
    namespaces: list[dict[str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ProcessStatus:
    role: str
    pid: int
    port: int
    running: bool
    answering: bool


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "closeup-ops" / "sandbox"


def state_file() -> Path:
    return state_dir() / "state.json"


def save_state(sandbox: Sandbox) -> None:
    path = state_file()
    path.write_text(json.dumps(asdict(sandbox), indent=2))
    path.chmod(0o600)


def load_state() -> Sandbox | None:
    path = state_file()
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    raw["processes"] = [SandboxProcess(**p) for p in raw["processes"]]
    return Sandbox(**raw)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return 0 if fields[0] == "Z" else int(fields[19])  # field 22 of stat, 3rd after ")"


def record(role: str, pid: int, port: int, host: str = LOOPBACK) -> SandboxProcess:
    return SandboxProcess(role, pid, port, cmdline(pid), host, start_ticks(pid))


def same_process(p: SandboxProcess) -> bool:
    """The PID is alive and still the process we started (PIDs get reused)."""
    if not p.pid:
        return False
    if p.start_ticks:
        return start_ticks(p.pid) == p.start_ticks
    return p.cmdline != "" and cmdline(p.pid) == p.cmdline


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def status(sandbox: Sandbox) -> list[ProcessStatus]:
    out = []
    for p in sandbox.processes:
        running = same_process(p)
        out.append(
            ProcessStatus(p.role, p.pid, p.port, running, running and answers(p.host, p.port))
        )
    return out


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (deepest last), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _gone(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_all(processes: list[SandboxProcess]) -> list[ProcessStatus]:
    """Stop the recorded processes, last started first; each one's children go with it."""
    results = []
    for p in reversed(processes):
        was_running = same_process(p)
        if was_running:
            kids = children(p.pid)
            for pid in [p.pid, *kids]:
                _signal(pid, signal.SIGCONT)
                _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(_gone(x) for x in [p.pid, *kids]):
                time.sleep(0.05)
            for pid in [p.pid, *kids]:
                if not _gone(pid):
                    _signal(pid, signal.SIGKILL)
            _reap(p.pid)
        results.append(ProcessStatus(p.role, p.pid, p.port, was_running, False))
    return list(reversed(results))


def _reap(pid: int) -> None:
    """Collect a child we started in this process (tests run up and down in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
