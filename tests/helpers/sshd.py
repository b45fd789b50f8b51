"""A real OpenSSH sshd on 127.0.0.1 with keys generated at test time, stopped by PID."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from closeup_ops.local.servers import free_port


def sshd_binary() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    client_key: Path  # private key allowed to log in
    host_key_pub: Path
    known_hosts: Path  # a known_hosts file that trusts this sshd
    workdir: Path
    proc: subprocess.Popen
    config: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def forwards_to(self, port: int) -> int:
        """How many forwarded connections (direct-tcpip channels: `ssh -L`, `ssh -D`, paramiko)
        this sshd opened to `port` so far: proof of the path a tunnelled client took. Needs
        LogLevel DEBUG1 (the `sshd` fixture sets it)."""
        log = (self.workdir / "sshd.log").read_text(errors="replace")
        return sum(
            1
            for line in log.splitlines()
            if "server_request_direct_tcpip" in line and line.endswith(f" port {port}")
        )

    def kill_sessions(self) -> int:
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        self.kill_sessions()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


def start_sshd(
    workdir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    netns: str | None = None,
    extra_config: str = "",
) -> Sshd:
    binary = sshd_binary()
    if not binary:
        raise FileNotFoundError("sshd not found: apt-get install -y openssh-server")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
    host_key = keygen(workdir / "ssh_host_ed25519_key")
    client_key = keygen(workdir / "client_ed25519")
    authorized = workdir / "authorized_keys"
    authorized.write_text((workdir / "client_ed25519.pub").read_text())
    authorized.chmod(0o600)
    port = port or free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress {host}
HostKey {host_key}
PidFile {workdir / "sshd.pid"}
AuthorizedKeysFile {authorized}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
AllowTcpForwarding yes
PermitOpen any
MaxSessions 100
MaxStartups 100
{extra_config}
LogLevel ERROR
"""
    )
    cmd = [binary, "-D", "-e", "-f", str(config)]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "sshd.log", "wb"),
    )
    known = workdir / "known_hosts"
    pub = (workdir / "ssh_host_ed25519_key.pub").read_text().split()
    hostspec = host if port == 22 else f"[{host}]:{port}"
    known.write_text(f"{hostspec} {pub[0]} {pub[1]}\n")
    sshd = Sshd(
        host=host,
        port=port,
        user=getpass.getuser(),
        client_key=client_key,
        host_key_pub=workdir / "ssh_host_ed25519_key.pub",
        known_hosts=known,
        workdir=workdir,
        proc=proc,
        config=config,
    )
    _wait_listening(sshd, netns)
    return sshd


def _wait_listening(sshd: Sshd, netns: str | None, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sshd.proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(sshd.workdir / 'sshd.log').read_text()}")
        if netns:
            out = subprocess.run(
                ["ip", "netns", "exec", netns, "ss", "-ltn"], capture_output=True, text=True
            )
            if f":{sshd.port} " in out.stdout:
                return
        else:
            try:
                with socket.create_connection((sshd.host, sshd.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                pass
        time.sleep(0.05)
    sshd.stop()
    raise RuntimeError("sshd did not start listening")
