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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.servers import tls_args
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
# The reader endpoint: a replica under the same name, listed in CLUSTER SLOTS. Not port + 1
# (AWS's 6379/6380), so that the tunnel must find it there, as with the sandbox's stand-in.
SERVERLESS_READER_PORT = SERVERLESS_PORT + 5
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

    def run_on_laptop(
        self, env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a command in the laptop namespace with a clean REDIS_*/BASTION_* environment."""
        full = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BASTION_"))}
        full.update(env)
        return subprocess.run(
            self.on_laptop(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=full,
            timeout=timeout,
        )

    def listening(self, ns: str) -> set[int]:
        """TCP ports listening in a namespace."""
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-ltnH"], capture_output=True, text=True
        )
        return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.stdout.splitlines()}

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

    def serverless_cli(self, *args: str, port: int = 0) -> str:
        """redis-cli over TLS inside the VPC to the serverless-like endpoint, as the ACL user
        (`port`: SERVERLESS_READER_PORT for the reader)."""
        return self.redis_cli(
            port or SERVERLESS_PORT,
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


REQUIRE_ENV = "CLOSEUP_OPS_REQUIRE_NETNS"


def require_netns(unavailable: Callable[[], str | None] | None = None) -> None:
    """Skip (saying why) where network namespaces cannot be made; with
    CLOSEUP_OPS_REQUIRE_NETNS=1 (CI) FAIL instead, so the VPC tests never vanish quietly."""
    import pytest

    reason = (unavailable or netns_unavailable)()
    if not reason:
        return
    if os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{REQUIRE_ENV}=1 but the VPC tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


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


# --- building the VPC (the `vpc` fixture and benchmarks/bench_tunnel.py) -------------


def build_network(env: Vpc) -> None:
    """The namespaces, the veth pair, the addresses and each side's hosts file."""
    pid = os.getpid()
    etc_vpc, etc_laptop = Path("/etc/netns") / env.vpc, Path("/etc/netns") / env.laptop
    must_ip("netns", "add", env.vpc)
    must_ip("netns", "add", env.laptop)
    lap_if, vpc_if = f"c5l{pid}"[:15], f"c5v{pid}"[:15]
    # Created straight inside the namespaces: the root namespace never sees them.
    must_ip(
        "link", "add", lap_if, "netns", env.laptop, "type", "veth",
        "peer", "name", vpc_if, "netns", env.vpc,
    )  # fmt: skip
    must_ip("-n", env.laptop, "addr", "add", f"{LAPTOP_IP}/30", "dev", lap_if)
    must_ip("-n", env.vpc, "addr", "add", f"{BASTION_IP}/30", "dev", vpc_if)
    for ip in (CACHE_IP, SERVERLESS_IP, *(ip for _, ip in DEMO_NODES)):
        must_ip("-n", env.vpc, "addr", "add", f"{ip}/32", "dev", "lo")
    for ns, dev in ((env.laptop, lap_if), (env.laptop, "lo"), (env.vpc, vpc_if), (env.vpc, "lo")):
        must_ip("-n", ns, "link", "set", dev, "up")
    # The VPC's private DNS: names resolve on the bastion's side only ...
    etc_vpc.mkdir(parents=True, exist_ok=True)
    names = [f"{CACHE_IP} {CACHE_NAME}", f"{DEMO_NODES[0][1]} {DEMO_ENTRY}"]
    names += [f"{ip} {name}" for name, ip in DEMO_NODES]
    names.append(f"{SERVERLESS_IP} {SERVERLESS_NAME}")
    (etc_vpc / "hosts").write_text("127.0.0.1 localhost\n" + "\n".join(names) + "\n")
    # ... while the laptop resolves the serverless name to an address it cannot reach.
    etc_laptop.mkdir(parents=True, exist_ok=True)
    (etc_laptop / "hosts").write_text(
        f"127.0.0.1 localhost\n{SERVERLESS_LAPTOP_IP} {SERVERLESS_NAME}\n"
    )


def build_standalone_and_plain_cluster(env: Vpc) -> None:
    env.redis("plain", PLAIN_PORT)
    tls = make_tls_files(env.workdir / "tls", names=(CACHE_NAME, f"*.{CACHE_NAME}"), ips=())
    env.tls_ca = tls.ca
    env.redis("tls", TLS_PORT, *tls_args(tls, TLS_PORT))
    for port in CLUSTER_PORTS:
        env.redis(f"node{port}", port, *cluster_flags())
    create_cluster(env, [f"{CACHE_IP}:{p}" for p in CLUSTER_PORTS], replicas=0)
    wait_until(
        lambda: all(
            "cluster_state:ok" in env.redis_cli(p, "CLUSTER", "INFO") for p in CLUSTER_PORTS
        ),
        "cluster state ok",
    )


def cluster_flags(*extra: str) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "1500",
        *extra,
    ]  # fmt: skip


def create_cluster(env: Vpc, addresses: list[str], replicas: int, *tls: str) -> None:
    create = subprocess.run(
        env.in_vpc(
            "redis-cli",
            *tls,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert create.returncode == 0, create.stdout[-600:] + create.stderr


def build_demo_cluster(env: Vpc) -> None:
    """3 primaries + 3 replicas over TLS, each announcing its DNS name under a wildcard
    certificate (no IP in it), as ElastiCache does with in-transit encryption."""
    tls = make_tls_files(env.workdir / "demo-tls", names=(f"*.{DEMO_DOMAIN}",), ips=())
    env.demo_ca = tls.ca
    for name, ip in DEMO_NODES:
        env.redis(
            name.split(".")[0],
            DEMO_PORT,
            *tls_args(tls, DEMO_PORT),
            *cluster_flags(
                "--cluster-announce-hostname",
                name,
                "--cluster-preferred-endpoint-type",
                "hostname",
                # Every node's address is on lo: without this the kernel picks the
                # destination's address as the source, and a node takes a peer's MEET
                # for its own address.
                "--bind-source-addr",
                ip,
            ),  # fmt: skip
            ip=ip,
        )
    create_cluster(
        env, [f"{ip}:{DEMO_PORT}" for _, ip in DEMO_NODES], 1, "--tls", "--cacert", str(tls.ca)
    )

    def healthy() -> bool:
        out = env.demo_cli(DEMO_NODES[0][0], "CLUSTER", "INFO")
        if "cluster_state:ok" not in out:
            return False
        nodes = env.demo_cli(DEMO_NODES[0][0], "CLUSTER", "NODES")
        return nodes.count("slave") == 3 and "fail" not in nodes

    wait_until(healthy, "TLS cluster with replicas ok", timeout=60)
    for name, _ in DEMO_NODES:  # every replica has synced
        wait_until(
            lambda n=name: "master_link_status:down" not in env.demo_cli(n, "INFO", "replication"),
            f"{name} in sync",
            timeout=60,
        )
    # Redis 7 leaves a replica out of CLUSTER SLOTS until it has replicated something
    # (offset 0 counts as unavailable): write to every shard, then wait for all six names.
    for i in range(30):
        env.demo_cli(DEMO_NODES[0][0], "-c", "SET", f"init:{i}", "1")
    wait_until(
        lambda: all(n in env.demo_cli(DEMO_NODES[0][0], "CLUSTER", "SLOTS") for n, _ in DEMO_NODES),
        "every node in CLUSTER SLOTS",
        timeout=60,
    )


def build_serverless(env: Vpc) -> None:
    """A serverless-like endpoint: TLS, cluster mode (one node, every slot) announcing its
    endpoint name, an ACL user with a password, the default user off; and its reader
    endpoint on the next port, a replica of it under the same name (AWS: 6379 and 6380)."""
    tls = make_tls_files(env.workdir / "serverless-tls", names=(SERVERLESS_NAME,), ips=())
    env.serverless_ca = tls.ca
    acl = env.workdir / "serverless.acl"
    acl.write_text(
        f"user {SERVERLESS_USER} on >{SERVERLESS_PASSWORD} ~* &* +@all\nuser default off\n"
    )
    env.redis(
        "serverless",
        SERVERLESS_PORT,
        *tls_args(tls, SERVERLESS_PORT),
        *cluster_flags(
            "--cluster-announce-hostname", SERVERLESS_NAME,
            "--cluster-preferred-endpoint-type", "hostname",
        ),
        "--aclfile", str(acl),
        ip=SERVERLESS_IP,
    )  # fmt: skip
    out = env.serverless_cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    assert "OK" in out, out
    wait_until(lambda: "cluster_state:ok" in env.serverless_cli("CLUSTER", "INFO"), "serverless")
    reader = SERVERLESS_READER_PORT
    env.redis(
        "serverless-reader",
        reader,
        *tls_args(tls, reader),
        *cluster_flags(
            "--cluster-announce-hostname", SERVERLESS_NAME,
            "--cluster-preferred-endpoint-type", "hostname",
        ),
        "--aclfile", str(acl),
        "--masteruser", SERVERLESS_USER,
        "--masterauth", SERVERLESS_PASSWORD,
        ip=SERVERLESS_IP,
    )  # fmt: skip
    wait_until(lambda: "cluster_state" in env.serverless_cli("CLUSTER", "INFO", port=reader), "r")
    env.serverless_cli("CLUSTER", "MEET", SERVERLESS_IP, str(SERVERLESS_PORT), port=reader)
    primary = env.serverless_cli("CLUSTER", "MYID").strip()
    wait_until(
        lambda: "OK" in env.serverless_cli("CLUSTER", "REPLICATE", primary, port=reader),
        "the reader replicates the serverless node",
    )
    # Redis 7 lists a replica in CLUSTER SLOTS only once it has replicated something
    env.serverless_cli("SET", "init:reader", "1")
    wait_until(
        lambda: f"{reader}" in env.serverless_cli("CLUSTER", "SLOTS"),
        "the reader in CLUSTER SLOTS",
    )


def start_bastion(env: Vpc) -> None:
    from helpers.sshd import start_sshd

    env.sshd = start_sshd(env.workdir / "sshd", host=BASTION_IP, port=SSH_PORT, netns=env.vpc)


def remove(env: Vpc) -> None:
    """Stop every process (by PID), delete the namespaces and their /etc/netns files."""
    env.stop()
    run_ip("netns", "del", env.laptop)
    run_ip("netns", "del", env.vpc)  # takes the veth pair with it
    for ns in (env.vpc, env.laptop):
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
    try:
        Path("/etc/netns").rmdir()  # only if nothing else is in it
    except OSError:
        pass
