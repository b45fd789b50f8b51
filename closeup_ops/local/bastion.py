"""A bastion for `closeup-ops sandbox up --bastion`: a real OpenSSH sshd in front of the caches.

Where this machine allows it (root, iproute2, `ip netns add` works), the bastion lives in a
network namespace of its own, a small VPC:

    this machine (root namespace)                  namespace cuosbx<pid> (the VPC side)
      caches on 127.0.0.1 and 10.233.N.1  --veth--  10.233.N.2: sshd = the bastion
                                                    /etc/netns/cuosbx<pid>/hosts: the
                                                    endpoint names -> 10.233.N.1

The bastion resolves the serverless endpoint name as a VPC's private DNS would (its own
hosts file), and reaches the caches over the veth; this machine reaches the bastion only by
SSH. Elsewhere the bastion is an sshd on 127.0.0.1 (a note says so): the tunnel can be
rehearsed against the caches it can name by address.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/etc/netns")


@dataclass
class BastionHost:
    host: str  # BASTION_HOST
    port: int
    user: str
    key: Path  # private key allowed to log in
    known_hosts: Path
    pid: int  # the sshd listener
    namespace: str | None  # the VPC namespace, when there is one
    host_veth: str | None  # our end of the veth pair
    cache_address: str  # where the bastion reaches the caches
    note: str | None = None


def sshd_binary() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _must(*args: str) -> None:
    out = _ip(*args)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def netns_unavailable() -> str | None:
    """Why the bastion cannot have a namespace here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    probe = f"cuosbxprobe{os.getpid()}"
    out = _ip("netns", "add", probe)
    if out.returncode != 0:
        return f"`ip netns add` does not work here ({out.stderr.strip()})"
    _ip("netns", "del", probe)
    return None


def _subnet() -> int:
    """A 10.233.N.0/30 no interface on this machine uses yet."""
    used = _ip("-4", "-o", "addr").stdout
    for n in [os.getpid() % 250, *range(250)]:
        if f"10.233.{n}." not in used:
            return n
    raise RuntimeError("no free 10.233.N.0/30 for the sandbox's VPC")


def make_vpc(names: list[str]) -> tuple[str, str, str, str]:
    """The namespace and veth; returns (namespace, host veth, cache address, bastion address)."""
    pid = os.getpid()
    namespace, host_if, vpc_if = f"cuosbx{pid}", f"csbh{pid}"[:15], f"csbv{pid}"[:15]
    n = _subnet()
    cache_ip, bastion_ip = f"10.233.{n}.1", f"10.233.{n}.2"
    _must("netns", "add", namespace)
    try:
        _must("link", "add", host_if, "type", "veth", "peer", "name", vpc_if, "netns", namespace)
        _must("addr", "add", f"{cache_ip}/30", "dev", host_if)
        _must("link", "set", host_if, "up")
        _must("-n", namespace, "addr", "add", f"{bastion_ip}/30", "dev", vpc_if)
        _must("-n", namespace, "link", "set", vpc_if, "up")
        _must("-n", namespace, "link", "set", "lo", "up")
        etc = NETNS_DIR / namespace
        etc.mkdir(parents=True, exist_ok=True)
        hosts = "".join(f"{cache_ip} {name}\n" for name in names)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{hosts}")
    except BaseException:
        delete_vpc(namespace, host_if)
        raise
    return namespace, host_if, cache_ip, bastion_ip


def delete_vpc(namespace: str, host_if: str | None) -> None:
    """Delete the namespace (its veth end goes with it, and so does ours) and its /etc/netns."""
    _ip("netns", "del", namespace)
    if host_if and _ip("link", "show", host_if).returncode == 0:
        _ip("link", "del", host_if)
    shutil.rmtree(NETNS_DIR / namespace, ignore_errors=True)


def namespace_exists(namespace: str) -> bool:
    return namespace in _ip("netns", "list").stdout.split()


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "closeup-ops sandbox", "-f", path],
        check=True,
        capture_output=True,
    )
    return path


def start_sshd(
    workdir: Path, host: str, port: int, namespace: str | None, cache_address: str
) -> BastionHost:
    binary = sshd_binary()
    if not binary:
        raise FileNotFoundError("sshd not found: apt-get install -y openssh-server")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
    except PermissionError:
        pass  # not root: sshd runs without privilege separation, as this user
    host_key = _keygen(workdir / "ssh_host_ed25519_key")
    client_key = _keygen(workdir / "bastion_ed25519")
    authorized = workdir / "authorized_keys"
    authorized.write_text((workdir / "bastion_ed25519.pub").read_text())
    authorized.chmod(0o600)
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {host_key}\n"
        f"PidFile {workdir / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n"
        "AllowTcpForwarding yes\nPermitOpen any\nMaxSessions 100\nMaxStartups 100\n"
        "LogLevel VERBOSE\n"
    )
    cmd = [binary, "-D", "-e", "-f", str(config)]
    if namespace:
        cmd = ["ip", "netns", "exec", namespace, *cmd]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "sshd.log", "wb"),
        start_new_session=True,
    )
    known = workdir / "known_hosts"
    kind, key = (workdir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known.write_text(f"{host if port == 22 else f'[{host}]:{port}'} {kind} {key}\n")
    _wait_banner(proc, host, port, workdir)
    return BastionHost(
        host=host,
        port=port,
        user=getpass.getuser(),
        key=client_key,
        known_hosts=known,
        pid=proc.pid,
        namespace=namespace,
        host_veth=None,
        cache_address=cache_address,
    )


def _wait_banner(proc: subprocess.Popen, host: str, port: int, workdir: Path) -> None:
    """Until sshd answers with its banner (over the veth, from this side, in a namespace)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (workdir / "sshd.log").read_text(errors="replace")[-600:]
            raise RuntimeError(f"sshd exited: {log}")
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"sshd on {host}:{port} did not answer in 15 s")
