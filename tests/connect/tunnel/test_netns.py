"""The cache in a VPC made of network namespaces: the only way in is the bastion.

closeup-ops runs in the laptop namespace (a subprocess under `ip netns exec`); Redis and
sshd run in the vpc namespace (see conftest.py). Skipped, saying why, without root or netns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.bastion import CLOSEUP_OPS, HeldTunnel
from helpers.bastion import bastion_env as sshd_bastion_env
from helpers.netns import CACHE_IP, CACHE_NAME, CLUSTER_PORTS, PLAIN_PORT, TLS_PORT

# Run in the laptop namespace by `tunnel -- python -c CHILD`: a plain redis-py cluster
# client (no closeup-ops code) built from the environment the tunnel hands its child,
# writing keys across every slot range.
CHILD = """
import os, sys
from redis.cluster import RedisCluster
client = RedisCluster(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]))
keys = [f"t5:vpc:{i}" for i in range(60)]
for key in keys:
    client.set(key, key, ex=120)
assert [client.get(k).decode() for k in keys] == keys
owners = {client.get_node_from_key(k).port for k in keys}
print(len(owners), os.environ["REDIS_CLUSTER"])
sys.exit(11)
"""


def bastion_env(vpc, **more: str) -> dict[str, str]:
    return sshd_bastion_env(vpc.sshd, NO_COLOR="1", **more)


def run_on_laptop(vpc, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BASTION_"))}
    full.update(env)
    return subprocess.run(
        vpc.on_laptop(*args), capture_output=True, text=True, env=full, timeout=120
    )


def test_cache_is_unreachable_without_the_bastion(vpc):
    env = {"REDIS_HOST": CACHE_IP, "REDIS_PORT": str(PLAIN_PORT), "REDIS_TIMEOUT": "2"}
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "ping")
    assert r.returncode == 3, r.stderr
    # ... and the name resolves only on the bastion's side, like a VPC's private DNS.
    env["REDIS_HOST"] = CACHE_NAME
    assert run_on_laptop(vpc, env, CLOSEUP_OPS, "ping").returncode == 3


def test_standalone_through_the_bastion_by_private_name(vpc):
    env = bastion_env(vpc, REDIS_HOST=CACHE_NAME, REDIS_PORT=str(PLAIN_PORT))
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "ping", "--via-bastion", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["reply"] == "PONG"


def test_tls_verified_against_the_endpoint_name(vpc):
    # The certificate names only cache.closeup.test: no IP, no localhost.
    env = bastion_env(
        vpc,
        REDIS_HOST=CACHE_NAME,
        REDIS_PORT=str(TLS_PORT),
        REDIS_TLS="true",
        REDIS_CA_CERT=str(vpc.tls_ca),
    )
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "ping", "--via-bastion", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tls"] is True


def test_tunnel_defaults_to_the_cache_port(vpc):
    env = bastion_env(vpc, REDIS_HOST=CACHE_NAME, REDIS_PORT=str(PLAIN_PORT))
    held = HeldTunnel(env, prefix=vpc.on_laptop())
    try:
        assert held.doc["exports"] == {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(PLAIN_PORT),
            "REDIS_TLS": "false",
            "REDIS_URL": f"redis://127.0.0.1:{PLAIN_PORT}",
        }
        assert held.doc["proxied"] is False  # a plain standalone cache: a plain forward
        assert held.doc["remote"] == f"{CACHE_NAME}:{PLAIN_PORT}"
        probe = run_on_laptop(vpc, {}, "redis-cli", "-p", str(PLAIN_PORT), "PING")
        assert probe.stdout.strip() == "PONG"
    finally:
        assert held.interrupt() == 0


def test_cluster_nodes_announce_private_addresses_and_are_remapped(vpc):
    env = bastion_env(vpc, REDIS_HOST=CACHE_IP, REDIS_PORT=str(CLUSTER_PORTS[0]))
    held = HeldTunnel(env, prefix=vpc.on_laptop())
    try:
        doc = held.doc
        assert doc["cluster"] is True and doc["proxied"] is True
        assert {n["node"] for n in doc["nodes"]} == {f"{CACHE_IP}:{p}" for p in CLUSTER_PORTS}
        assert all(n["local"].startswith("127.0.0.1:") for n in doc["nodes"])
    finally:
        assert held.interrupt() == 0
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "ping", "--via-bastion", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["nodes"]) == 3


def test_cluster_child_writes_every_slot_range(vpc):
    env = bastion_env(vpc, REDIS_HOST=CACHE_IP, REDIS_PORT=str(CLUSTER_PORTS[0]))
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "tunnel", "--", sys.executable, "-c", CHILD)
    assert r.returncode == 11, r.stderr
    assert r.stdout.split() == ["3", "true"]
    for port in CLUSTER_PORTS:  # checked from inside the VPC: every primary got keys
        assert "t5:vpc:" in vpc.redis_cli(port, "--scan", "--pattern", "t5:vpc:*")


def test_closeup_ops_child_of_tunnel_follows_cluster_redirects(vpc):
    env = bastion_env(vpc, REDIS_HOST=CACHE_IP, REDIS_PORT=str(CLUSTER_PORTS[0]))
    r = run_on_laptop(vpc, env, CLOSEUP_OPS, "tunnel", "--", CLOSEUP_OPS, "ping", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["nodes"]) == 3
