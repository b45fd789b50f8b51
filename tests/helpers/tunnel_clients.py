"""Clients of a tunnel in the VPC of tests/helpers/netns.py: the settings for the TLS
cluster and the serverless-like endpoint, a tunnel held as a user holds it (its `export`
line read from stdout), redis-cli in the laptop namespace, and reading its replies."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from helpers.bastion import CLOSEUP_OPS
from helpers.bastion import bastion_env as sshd_bastion_env
from helpers.netns import (
    DEMO_ENTRY,
    DEMO_NODES,
    DEMO_PORT,
    SERVERLESS_NAME,
    SERVERLESS_PASSWORD,
    SERVERLESS_PORT,
    SERVERLESS_USER,
    wait_until,
)

KEYS = 60


def demo_env(vpc, **more: str) -> dict[str, str]:
    """The TLS cluster by its configuration endpoint, TLS verified with the test CA."""
    return sshd_bastion_env(
        vpc.sshd,
        NO_COLOR="1",
        REDIS_HOST=DEMO_ENTRY,
        REDIS_PORT=str(DEMO_PORT),
        REDIS_TLS="true",
        REDIS_CA_CERT=str(vpc.demo_ca),
        **more,
    )


def serverless_env(vpc, credentials: bool = True, **more: str) -> dict[str, str]:
    """The serverless-like endpoint by name: TLS and cluster mode follow from the name."""
    env = sshd_bastion_env(
        vpc.sshd,
        NO_COLOR="1",
        REDIS_HOST=SERVERLESS_NAME,
        REDIS_PORT=str(SERVERLESS_PORT),
        REDIS_CA_CERT=str(vpc.serverless_ca),
        **more,
    )
    if credentials:
        env.update(REDIS_USERNAME=SERVERLESS_USER, REDIS_PASSWORD=SERVERLESS_PASSWORD)
    return env


def set_commands(prefix: str, count: int = KEYS) -> str:
    return "".join(f"SET {prefix}{i} v{i}\n" for i in range(count))


def replies(stdout: str) -> list[str]:
    """redis-cli's replies; its "-> Redirected to slot [N] located at H:P" notes must name
    a local listener (a VPC address there is exactly the bug this tunnel fixes)."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("-> Redirected"):
            assert " located at 127.0.0.1:" in line, line
        elif line.strip():
            out.append(line.strip())
    return out


def primaries(vpc) -> list[str]:
    """The demo cluster's primaries now (a failover test may have swapped one)."""
    out = vpc.demo_cli(DEMO_NODES[0][0], "CLUSTER", "NODES")
    names = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and "master" in fields[2]:
            names.append(fields[1].split(",")[1])
    assert len(names) == 3, out
    return names


def assert_keys_on_every_primary(vpc, prefix: str) -> None:
    for name in primaries(vpc):
        found = vpc.demo_cli(name, "--scan", "--pattern", f"{prefix}*")
        assert prefix in found, f"no {prefix}* key on {name}: {found}"


class TextTunnel:
    """`closeup-ops tunnel` held in the laptop namespace, read as a user reads it: the
    `export ...` line on stdout, messages on stderr."""

    def __init__(self, vpc, env: dict[str, str], *args: str):
        full = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BASTION_"))}
        full.update(env)
        self.proc = subprocess.Popen(
            vpc.on_laptop(CLOSEUP_OPS, "tunnel", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full,
        )
        self.err: list[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()
        self.out: list[str] = []
        self.exports: dict[str, str] = {}
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.out.append(line.rstrip())
            if line.startswith("export "):
                self.exports = dict(item.split("=", 1) for item in line.split()[1:])
                break
        if not self.exports:
            self.proc.wait(10)
            raise AssertionError(f"tunnel exited {self.proc.returncode}: {self.err}")

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.err.append(line.rstrip())

    def wait_for_err(self, needle: str, timeout: float = 90) -> None:
        wait_until(lambda: any(needle in line for line in list(self.err)), needle, timeout)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def redis_cli_c(vpc, exports: dict[str, str], stdin: str, *extra: str):
    """`redis-cli -c` in the laptop namespace pointed at the exported host and port."""
    return vpc.run_on_laptop(
        {},
        "redis-cli", "-c", "-h", exports["REDIS_HOST"], "-p", exports["REDIS_PORT"], *extra,
        stdin=stdin,
    )  # fmt: skip


def pgrep(pattern: str) -> subprocess.CompletedProcess:
    # `--`: the pattern may start with "-"; exit 1 means nothing matched
    return subprocess.run(["pgrep", "-a", "-f", "--", pattern], capture_output=True, text=True)
