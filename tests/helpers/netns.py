"""A VPC in network namespaces for the tunnel tests (fixture: tests/connect/tunnel/conftest.py).

    laptop ns  10.231.5.1/30 --veth-- 10.231.5.2/30  vpc ns: sshd (the bastion)
                                                     10.231.6.10 on lo: Redis (standalone,
                                                     TLS, 3-primary cluster) = the cache subnet

The laptop namespace has no route to 10.231.6.0/24 and no default route, so the only way
to the cache is the bastion's forward; no packet can leave the two namespaces. In the vpc
namespace /etc/netns/<vpc>/hosts makes cache.closeup.test resolve to 10.231.6.10 - for the
bastion only, as a VPC's private DNS would. Every process is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.sshd import sshd_binary

LAPTOP_IP, BASTION_IP, CACHE_IP = "10.231.5.1", "10.231.5.2", "10.231.6.10"
CACHE_NAME = "cache.closeup.test"
SSH_PORT, PLAIN_PORT, TLS_PORT = 2222, 16379, 16380
CLUSTER_PORTS = (17001, 17002, 17003)


def run_ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def must_ip(*args: str) -> None:
    out = run_ip(*args)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


@dataclass
class Vpc:
    vpc: str
    laptop: str
    workdir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    sshd: object = None
    tls_ca: Path | None = None

    def in_vpc(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.vpc, *cmd]

    def on_laptop(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.laptop, *cmd]

    def redis(self, name: str, port: int, *extra: str) -> None:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--bind",
            CACHE_IP,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
            "--protected-mode",
            "no",
            *extra,
        ]
        if "--tls-port" not in extra:
            args += ["--port", str(port)]
        self.procs.append(
            subprocess.Popen(
                self.in_vpc(*args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_until(lambda: "Ready to accept" in _read(workdir / "redis.log"), f"redis {name}")

    def redis_cli(self, port: int, *args: str) -> str:
        out = subprocess.run(
            self.in_vpc("redis-cli", "-h", CACHE_IP, "-p", str(port), *args),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout + out.stderr

    def stop(self) -> None:
        for proc in self.procs:  # only what we started, by PID
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self.sshd is not None:
            self.sshd.stop()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (this test runs as a VPC only as root)"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    if not sshd_binary() or not shutil.which("redis-server"):
        return "sshd or redis-server is not installed"
    probe = f"cuo5probe{os.getpid()}"
    out = run_ip("netns", "add", probe)
    if out.returncode != 0:
        return f"`ip netns add` does not work here: {out.stderr.strip()}"
    run_ip("netns", "del", probe)
    return None
