"""A VPC in network namespaces for the tunnel tests (fixture: tests/connect/tunnel/conftest.py).

    laptop ns  10.231.5.1/30 --veth-- 10.231.5.2/30  vpc ns: sshd (the bastion)
                                                     10.231.6.10 on lo: Redis (standalone,
                                                     TLS, 3-primary cluster) = the cache subnet
                                                     10.231.6.21-26 on lo: TLS cluster, 3
                                                     primaries + 3 replicas, port 7379 each,
                                                     announcing node-N.demo.closeup.test
                                                     10.231.6.30 on lo: serverless-like
                                                     endpoint (TLS, cluster, ACL user)

The laptop namespace has no route to 10.231.6.0/24 and no default route, so the only way
to the cache is the bastion's forward; no packet can leave the two namespaces. In the vpc
namespace /etc/netns/<vpc>/hosts makes cache.closeup.test, *.demo.closeup.test and the
serverless name resolve - for the bastion only, as a VPC's private DNS would. The TLS
cluster's certificate is a wildcard for *.demo.closeup.test (no IP), as ElastiCache's with
in-transit encryption: a client that connects to an IP cannot verify it. On the laptop
side /etc/netns/<laptop>/hosts sends the serverless name to an address with no route (a
laptop resolves the real one to a VPC address it cannot reach). Every process is stopped by
its PID.
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

# The TLS cluster with hostnames (ElastiCache cluster mode with in-transit encryption)
DEMO_DOMAIN = "demo.closeup.test"
DEMO_PORT = 7379
DEMO_NODES = tuple((f"node-{i}.{DEMO_DOMAIN}", f"10.231.6.{20 + i}") for i in range(1, 7))
DEMO_ENTRY = f"clustercfg.{DEMO_DOMAIN}"  # the configuration endpoint: node 1's address

# The serverless-like endpoint: TLS, cluster mode, an ACL user, its own name for every slot
SERVERLESS_NAME = "demo-xyz.serverless.use1.cache.amazonaws.com"
SERVERLESS_IP, SERVERLESS_PORT = "10.231.6.30", 16390
SERVERLESS_LAPTOP_IP = "10.231.99.99"  # what the laptop resolves it to: no route there
SERVERLESS_USER, SERVERLESS_PASSWORD = "app", "srv-Pa55-word-77"
# The IAM user of the same endpoint (its passwords: the tokens the test expects)
IAM_USER = "iam-app"


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
    demo_ca: Path | None = None
    serverless_ca: Path | None = None

    def in_vpc(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.vpc, *cmd]

    def on_laptop(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.laptop, *cmd]

    def redis(self, name: str, port: int, *extra: str, ip: str = CACHE_IP) -> None:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--bind",
            ip,
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

    def redis_cli(self, port: int, *args: str, host: str = CACHE_IP) -> str:
        out = subprocess.run(
            self.in_vpc("redis-cli", "-h", host, "-p", str(port), *args),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout + out.stderr

    def demo_cli(self, host: str, *args: str) -> str:
        """redis-cli over TLS inside the VPC (the admin's view) to a demo cluster node."""
        ca = str(self.demo_ca)
        return self.redis_cli(DEMO_PORT, "--tls", "--cacert", ca, *args, host=host)

    def serverless_cli(self, *args: str) -> str:
        """redis-cli over TLS inside the VPC to the serverless-like endpoint, as the ACL user."""
        return self.redis_cli(
            SERVERLESS_PORT,
            "--tls",
            "--cacert",
            str(self.serverless_ca),
            "--user",
            SERVERLESS_USER,
            "--pass",
            SERVERLESS_PASSWORD,
            "--no-auth-warning",
            *args,
            host=SERVERLESS_NAME,
        )

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
