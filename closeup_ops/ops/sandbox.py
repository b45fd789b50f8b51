"""A local stand-in for the whole stack: redis-server processes and a moto server seeded
with a replication group, security groups and a snapshot.

`up` records every process it starts (PID, command line, port) in a state file; `down`
stops exactly those processes, after checking each PID still runs the command it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from closeup_ops.errors import ConnectError, UsageError
from closeup_ops.local.servers import (
    LOOPBACK,
    RedisProcess,
    free_port,
    start_cluster,
    start_replicated,
)

CACHE_NAME = "sandbox-rg"
REGION = "us-east-1"
FAKE_KEY = "sandbox"  # moto accepts any credentials; these are not secrets


@dataclass
class SandboxProcess:
    role: str
    pid: int
    port: int
    cmdline: str


@dataclass
class Sandbox:
    directory: str
    started: str
    processes: list[SandboxProcess]
    exports: dict[str, str]
    aws: dict[str, Any] = field(default_factory=dict)
    cluster_entry: str | None = None


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


def _state_file() -> Path:
    return state_dir() / "state.json"


def load_state() -> Sandbox | None:
    path = _state_file()
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    raw["processes"] = [SandboxProcess(**p) for p in raw["processes"]]
    return Sandbox(**raw)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _record(role: str, server: RedisProcess) -> SandboxProcess:
    return SandboxProcess(role, server.pid or 0, server.port, _cmdline(server.pid or 0))


def up(with_cluster: bool = False, with_aws: bool = True) -> Sandbox:
    """Start the sandbox; refuses when one is already recorded as running."""
    existing = load_state()
    if existing and any(s.running for s in status(existing)):
        raise UsageError(
            f"a sandbox is already running (state in {_state_file()})",
            "use it, or stop it with `closeup-ops sandbox down`",
        )
    if with_aws:
        _require_moto()
    directory = state_dir() / "run"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    processes: list[SandboxProcess] = []
    sandbox = Sandbox(
        str(directory), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), processes, {}
    )
    try:
        pair = start_replicated(
            directory / "replicated", "--enable-debug-command", "local", detach=True
        )
        processes += [_record("primary", pair.primary), _record("replica", pair.replica)]
        sandbox.exports.update(REDIS_HOST=LOOPBACK, REDIS_PORT=str(pair.primary.port))
        seed_keys(LOOPBACK, pair.primary.port)
        if with_cluster:
            cluster = start_cluster(directory / "cluster", 3, 1, detach=True)
            processes += [_record(f"cluster-node{i}", n) for i, n in enumerate(cluster.nodes)]
            sandbox.cluster_entry = cluster.entry.address
        if with_aws:
            port, pid = _start_moto(directory)
            processes.append(SandboxProcess("moto", pid, port, _cmdline(pid)))
            endpoint = f"http://{LOOPBACK}:{port}"
            sandbox.aws = seed_aws(endpoint)
            sandbox.exports.update(
                AWS_ENDPOINT_URL=endpoint,
                AWS_ACCESS_KEY_ID=FAKE_KEY,
                AWS_SECRET_ACCESS_KEY=FAKE_KEY,
                AWS_REGION=REGION,
                ELASTICACHE_CACHE=CACHE_NAME,
            )
    except BaseException:
        _stop_all(processes)
        raise
    _state_file().write_text(json.dumps(asdict(sandbox), indent=2))
    return sandbox


def seed_keys(host: str, port: int) -> int:
    """The guide's key shapes: OTPs (300 s), pending videos (1800 s), verified users (no TTL,
    on purpose: the walkthrough's `ttl --expect-max` finds them)."""
    import redis

    client = redis.Redis(host=host, port=port)
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"otp:user{i}", f"{100000 + i * 7919 % 900000}", ex=300)
    for i in range(50):
        pipe.set(f"video:pending:user{i}", f"job-{i}", ex=1800)
    for i in range(100):
        pipe.set(f"user:verified:user{i}", "1")
    pipe.execute()
    client.close()
    return 350


def _require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise UsageError(
            "the sandbox's AWS stand-in needs moto",
            "pip install 'closeup-ops[sandbox]', or run `sandbox up --no-aws`",
        ) from None


def _start_moto(directory: Path) -> tuple[int, int]:
    port = free_port()
    log = open(directory / "moto.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConnectError("moto server exited", f"see {directory / 'moto.log'}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return port, proc.pid
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise ConnectError("moto server did not start in 30 s", f"see {directory / 'moto.log'}")


def seed_aws(endpoint: str) -> dict[str, Any]:
    """A VPC with an app and a cache security group, a replication group, a snapshot."""
    import boto3

    kw = dict(
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    ec2 = boto3.client("ec2", **kw)
    ec = boto3.client("elasticache", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    app_sg = ec2.create_security_group(
        GroupName="closeup-api", Description="Close-Up API", VpcId=vpc
    )["GroupId"]
    cache_sg = ec2.create_security_group(
        GroupName="closeup-cache", Description="Close-Up cache", VpcId=vpc
    )["GroupId"]
    ec.create_cache_subnet_group(
        CacheSubnetGroupName="sandbox-subnets",
        CacheSubnetGroupDescription="sandbox",
        SubnetIds=[subnet],
    )
    ec.create_replication_group(
        ReplicationGroupId=CACHE_NAME,
        ReplicationGroupDescription="closeup-ops sandbox",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t4g.micro",
        NumCacheClusters=2,
        AutomaticFailoverEnabled=True,
        CacheSubnetGroupName="sandbox-subnets",
        SecurityGroupIds=[cache_sg],
        TransitEncryptionEnabled=True,
        SnapshotRetentionLimit=7,
    )
    ec.create_snapshot(ReplicationGroupId=CACHE_NAME, SnapshotName=f"{CACHE_NAME}-seed")
    return {
        "vpc": vpc,
        "subnet": subnet,
        "app_security_group": app_sg,
        "cache_security_group": cache_sg,
        "replication_group": CACHE_NAME,
        "snapshot": f"{CACHE_NAME}-seed",
    }


def status(sandbox: Sandbox) -> list[ProcessStatus]:
    out = []
    for p in sandbox.processes:
        running = _same_process(p)
        out.append(
            ProcessStatus(p.role, p.pid, p.port, running, running and _answers(LOOPBACK, p.port))
        )
    return out


def _same_process(p: SandboxProcess) -> bool:
    """The PID is alive and still runs what we started (PIDs get reused)."""
    return bool(p.pid) and _cmdline(p.pid) == p.cmdline and p.cmdline != ""


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def down() -> list[ProcessStatus]:
    sandbox = load_state()
    if sandbox is None:
        raise UsageError("no sandbox is recorded", "start one with `closeup-ops sandbox up`")
    stopped = _stop_all(sandbox.processes)
    _state_file().unlink(missing_ok=True)
    shutil.rmtree(sandbox.directory, ignore_errors=True)
    return stopped


def _stop_all(processes: list[SandboxProcess]) -> list[ProcessStatus]:
    results = []
    for p in reversed(processes):
        was_running = _same_process(p)
        if was_running:
            os.kill(p.pid, signal.SIGCONT)
            os.kill(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _same_process(p) and time.monotonic() < deadline:
                _reap(p.pid)
                time.sleep(0.05)
            if _same_process(p):
                os.kill(p.pid, signal.SIGKILL)
            _reap(p.pid)
        results.append(ProcessStatus(p.role, p.pid, p.port, was_running, False))
    return list(reversed(results))


def _reap(pid: int) -> None:
    """Collect a child we started in this process (tests run up and down in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
