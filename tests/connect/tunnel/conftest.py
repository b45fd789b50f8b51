"""The `vpc` fixture: a VPC in network namespaces, made once for the session and removed
after it (layout and reasons in tests/helpers/netns.py). Without root or netns it skips,
saying why - unless CLOSEUP_OPS_REQUIRE_NETNS=1 (CI), where a missing netns FAILS."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.netns import (
    BASTION_IP,
    CACHE_IP,
    CACHE_NAME,
    CLUSTER_PORTS,
    DEMO_ENTRY,
    DEMO_NODES,
    DEMO_PORT,
    LAPTOP_IP,
    PLAIN_PORT,
    SERVERLESS_IP,
    SERVERLESS_LAPTOP_IP,
    SERVERLESS_NAME,
    SERVERLESS_PASSWORD,
    SERVERLESS_PORT,
    SERVERLESS_USER,
    SSH_PORT,
    TLS_PORT,
    Vpc,
    must_ip,
    netns_unavailable,
    run_ip,
    wait_until,
)
from helpers.sshd import start_sshd

from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.servers import tls_args

REQUIRE_ENV = "CLOSEUP_OPS_REQUIRE_NETNS"


def require_netns() -> None:
    """Skip (saying why) where network namespaces cannot be made; fail instead in CI."""
    reason = netns_unavailable()
    if not reason:
        return
    if os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{REQUIRE_ENV}=1 but the VPC tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vpc(tmp_path_factory):
    require_netns()
    pid = os.getpid()
    env = Vpc(vpc=f"cuo5vpc{pid}", laptop=f"cuo5lap{pid}", workdir=tmp_path_factory.mktemp("vpc"))
    etc_vpc, etc_laptop = Path("/etc/netns") / env.vpc, Path("/etc/netns") / env.laptop
    try:
        _network(env, etc_vpc, etc_laptop)
        _standalone_and_plain_cluster(env)
        _demo_cluster(env)
        _serverless(env)
        env.sshd = start_sshd(env.workdir / "sshd", host=BASTION_IP, port=SSH_PORT, netns=env.vpc)
        yield env
    finally:
        env.stop()
        run_ip("netns", "del", env.laptop)
        run_ip("netns", "del", env.vpc)  # takes the veth pair with it
        for etc in (etc_vpc, etc_laptop):
            shutil.rmtree(etc, ignore_errors=True)
        try:
            etc_vpc.parent.rmdir()  # /etc/netns, only if nothing else is in it
        except OSError:
            pass


def _network(env: Vpc, etc_vpc: Path, etc_laptop: Path) -> None:
    pid = os.getpid()
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


def _standalone_and_plain_cluster(env: Vpc) -> None:
    env.redis("plain", PLAIN_PORT)
    tls = make_tls_files(env.workdir / "tls", names=(CACHE_NAME, f"*.{CACHE_NAME}"), ips=())
    env.tls_ca = tls.ca
    env.redis("tls", TLS_PORT, *tls_args(tls, TLS_PORT))
    for port in CLUSTER_PORTS:
        env.redis(f"node{port}", port, *_cluster_flags())
    _create_cluster(env, [f"{CACHE_IP}:{p}" for p in CLUSTER_PORTS], replicas=0)
    wait_until(
        lambda: all(
            "cluster_state:ok" in env.redis_cli(p, "CLUSTER", "INFO") for p in CLUSTER_PORTS
        ),
        "cluster state ok",
    )


def _cluster_flags(*extra: str) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "1500",
        *extra,
    ]  # fmt: skip


def _create_cluster(env: Vpc, addresses: list[str], replicas: int, *tls: str) -> None:
    create = subprocess.run(
        env.in_vpc(
            "redis-cli", *tls, "--cluster", "create", *addresses,
            "--cluster-replicas", str(replicas), "--cluster-yes",
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert create.returncode == 0, create.stdout[-600:] + create.stderr


def _demo_cluster(env: Vpc) -> None:
    """3 primaries + 3 replicas over TLS, each announcing its DNS name under a wildcard
    certificate (no IP in it), as ElastiCache does with in-transit encryption."""
    from helpers.netns import DEMO_DOMAIN

    tls = make_tls_files(env.workdir / "demo-tls", names=(f"*.{DEMO_DOMAIN}",), ips=())
    env.demo_ca = tls.ca
    for name, ip in DEMO_NODES:
        env.redis(
            name.split(".")[0],
            DEMO_PORT,
            *tls_args(tls, DEMO_PORT),
            *_cluster_flags(
                "--cluster-announce-hostname", name,
                "--cluster-preferred-endpoint-type", "hostname",
                # Every node's address is on lo: without this the kernel picks the
                # destination's address as the source, and a node takes a peer's MEET
                # for its own address.
                "--bind-source-addr", ip,
            ),  # fmt: skip
            ip=ip,
        )
    _create_cluster(
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


def _serverless(env: Vpc) -> None:
    """A serverless-like endpoint: TLS, cluster mode (one node, every slot) announcing its
    endpoint name, an ACL user with a password, the default user off."""
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
        *_cluster_flags(
            "--cluster-announce-hostname", SERVERLESS_NAME,
            "--cluster-preferred-endpoint-type", "hostname",
        ),
        "--aclfile", str(acl),
        ip=SERVERLESS_IP,
    )  # fmt: skip
    out = env.serverless_cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    assert "OK" in out, out
    wait_until(lambda: "cluster_state:ok" in env.serverless_cli("CLUSTER", "INFO"), "serverless")
