"""The `vpc` fixture: a VPC in network namespaces, made for the module and removed after it
(layout and reasons in tests/helpers/netns.py). Skips, saying why, without root or netns."""

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
    LAPTOP_IP,
    PLAIN_PORT,
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


@pytest.fixture(scope="module")
def vpc(tmp_path_factory):
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    pid = os.getpid()
    env = Vpc(vpc=f"cuo5vpc{pid}", laptop=f"cuo5lap{pid}", workdir=tmp_path_factory.mktemp("vpc"))
    etc = Path("/etc/netns") / env.vpc
    try:
        must_ip("netns", "add", env.vpc)
        must_ip("netns", "add", env.laptop)
        lap_if, vpc_if = f"c5l{pid}"[:15], f"c5v{pid}"[:15]
        # Created straight inside the namespaces: the root namespace never sees them.
        must_ip(
            "link",
            "add",
            lap_if,
            "netns",
            env.laptop,
            "type",
            "veth",
            "peer",
            "name",
            vpc_if,
            "netns",
            env.vpc,
        )
        must_ip("-n", env.laptop, "addr", "add", f"{LAPTOP_IP}/30", "dev", lap_if)
        must_ip("-n", env.vpc, "addr", "add", f"{BASTION_IP}/30", "dev", vpc_if)
        must_ip("-n", env.vpc, "addr", "add", f"{CACHE_IP}/32", "dev", "lo")
        for ns, dev in (
            (env.laptop, lap_if),
            (env.laptop, "lo"),
            (env.vpc, vpc_if),
            (env.vpc, "lo"),
        ):
            must_ip("-n", ns, "link", "set", dev, "up")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{CACHE_IP} {CACHE_NAME}\n")

        env.redis("plain", PLAIN_PORT)
        tls = make_tls_files(env.workdir / "tls", names=(CACHE_NAME, f"*.{CACHE_NAME}"), ips=())
        env.tls_ca = tls.ca
        env.redis("tls", TLS_PORT, *tls_args(tls, TLS_PORT))
        for port in CLUSTER_PORTS:
            env.redis(
                f"node{port}",
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1500",
            )
        create = subprocess.run(
            env.in_vpc(
                "redis-cli",
                "--cluster",
                "create",
                *[f"{CACHE_IP}:{p}" for p in CLUSTER_PORTS],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert create.returncode == 0, create.stdout[-400:] + create.stderr
        wait_until(
            lambda: all(
                "cluster_state:ok" in env.redis_cli(p, "CLUSTER", "INFO") for p in CLUSTER_PORTS
            ),
            "cluster state ok",
        )
        env.sshd = start_sshd(env.workdir / "sshd", host=BASTION_IP, port=SSH_PORT, netns=env.vpc)
        yield env
    finally:
        env.stop()
        run_ip("netns", "del", env.laptop)
        run_ip("netns", "del", env.vpc)  # takes the veth pair with it
        shutil.rmtree(etc, ignore_errors=True)
        try:
            etc.parent.rmdir()  # /etc/netns, only if nothing else is in it
        except OSError:
            pass
