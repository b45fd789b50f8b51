"""Any client through `closeup-ops tunnel`, in the VPC made of network namespaces (layout in
tests/helpers/netns.py): the cache is reachable only through the bastion, node names resolve
only on its side, and TLS certificates name DNS names only (a wildcard for the cluster).

Clients that know nothing of closeup-ops: `redis-cli -c` (as the tunnel's child and from
"another terminal" against a held tunnel), a plain redis-py RedisCluster, redis-benchmark
--cluster; the serverless-like endpoint with the tunnel authenticating and with the client
sending AUTH itself. Faults (failover, SSH drop, Ctrl-C, --bind): test_netns_faults.py.
"""

from __future__ import annotations

import sys

from helpers.bastion import CLOSEUP_OPS
from helpers.netns import (
    DEMO_PORT,
    SERVERLESS_NAME,
    SERVERLESS_PASSWORD,
    SERVERLESS_READER_PORT,
    SERVERLESS_USER,
)
from helpers.tunnel_clients import (
    KEYS,
    TextTunnel,
    assert_keys_on_every_primary,
    demo_env,
    redis_cli_c,
    replies,
    serverless_env,
    set_commands,
)

# --- the TLS cluster whose nodes announce names -----------------------------------------


def test_redis_cli_c_as_the_tunnels_child(vpc):
    script = (
        f'printf \'{set_commands("t11:child:")}\' | redis-cli -c -h "$REDIS_HOST" -p "$REDIS_PORT"'
    )
    r = vpc.run_on_laptop(demo_env(vpc), CLOSEUP_OPS, "tunnel", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert replies(r.stdout) == ["OK"] * KEYS, r.stdout
    assert "-> Redirected" in r.stdout  # the keys did span the nodes
    assert "cluster mode: use a cluster client" in r.stderr
    assert_keys_on_every_primary(vpc, "t11:child:")


def test_redis_cli_c_from_another_terminal(vpc):
    held = TextTunnel(vpc, demo_env(vpc))
    try:
        ex = held.exports
        assert ex["REDIS_HOST"] == "127.0.0.1" and ex["REDIS_PORT"] == str(DEMO_PORT)
        assert ex["REDIS_TLS"] == "false" and ex["REDIS_CLUSTER"] == "true"
        assert ex["REDIS_URL"] == f"redis://127.0.0.1:{DEMO_PORT}"
        assert "cluster mode: use a cluster client (redis-cli -c, RedisCluster, ...)" in held.out
        r = redis_cli_c(vpc, ex, set_commands("t11:term:"))
        assert replies(r.stdout) == ["OK"] * KEYS, r.stdout + r.stderr
        got = redis_cli_c(vpc, ex, "".join(f"GET t11:term:{i}\n" for i in range(KEYS)))
        assert replies(got.stdout) == [f"v{i}" for i in range(KEYS)]
    finally:
        assert held.interrupt() == 0
    assert_keys_on_every_primary(vpc, "t11:term:")


# A plain redis-py cluster client, nothing from closeup-ops: what an app does.
REDIS_PY_CHILD = """
import os, sys
from redis.cluster import RedisCluster
client = RedisCluster(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]))
keys = [f"t11:py:{i}" for i in range(60)]
for key in keys:
    client.set(key, key, ex=300)
assert [client.get(k).decode() for k in keys] == keys
owners = {client.get_node_from_key(k).port for k in keys}
print(len(owners), os.environ["REDIS_CLUSTER"], os.environ["REDIS_TLS"])
sys.exit(11)
"""


def test_plain_redis_py_cluster_child(vpc):
    r = vpc.run_on_laptop(
        demo_env(vpc), CLOSEUP_OPS, "tunnel", "--", sys.executable, "-c", REDIS_PY_CHILD
    )
    assert r.returncode == 11, r.stderr
    assert r.stdout.split() == ["3", "true", "false"]
    assert_keys_on_every_primary(vpc, "t11:py:")


def test_redis_benchmark_cluster_through_the_tunnel(vpc):
    script = (
        'redis-benchmark --cluster -h "$REDIS_HOST" -p "$REDIS_PORT" -t set,get -n 3000 -c 8 -q'
    )
    r = vpc.run_on_laptop(demo_env(vpc), CLOSEUP_OPS, "tunnel", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.replace("\r", "\n").splitlines() if "requests per second" in ln]
    assert any(ln.startswith("SET:") for ln in lines) and any(ln.startswith("GET:") for ln in lines)
    assert "error" not in r.stdout.lower(), r.stdout


# --- the serverless-like endpoint -----------------------------------------------------------


def test_serverless_name_is_unreachable_from_the_laptop(vpc):
    r = vpc.run_on_laptop(serverless_env(vpc, REDIS_TIMEOUT="2"), CLOSEUP_OPS, "ping")
    assert r.returncode == 3, r.stderr


def test_serverless_tunnel_authenticates_for_a_client_that_sends_nothing(vpc):
    script = (
        "env | grep -c REDIS_PASSWORD; "
        f"printf '{set_commands('t11:srv:', 20)}GET t11:srv:7\\n' | "
        'redis-cli -c -h "$REDIS_HOST" -p "$REDIS_PORT"'
    )
    r = vpc.run_on_laptop(serverless_env(vpc), CLOSEUP_OPS, "tunnel", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert replies(r.stdout) == ["0"] + ["OK"] * 20 + ["v7"], r.stdout  # no password handed down
    assert SERVERLESS_PASSWORD not in r.stdout + r.stderr
    assert "t11:srv:7" in vpc.serverless_cli("--scan", "--pattern", "t11:srv:*")


def test_serverless_client_sends_auth_itself(vpc):
    held = TextTunnel(vpc, serverless_env(vpc, credentials=False))
    try:
        held.wait_for_err("your client must send them")
        ex = held.exports
        assert ex["REDIS_CLUSTER"] == "true" and ex["REDIS_TLS"] == "false"
        # not asked (no credentials), and not AWS's 6379: no reader port is made up
        assert "REDIS_READER_PORT" not in ex
        # without AUTH the cache refuses: the tunnel holds no credentials here ...
        refused = redis_cli_c(vpc, ex, "SET t11:self:1 v\n")
        assert "NOAUTH" in refused.stdout + refused.stderr
        # ... and AUTH from the client goes through to the cache
        auth = ("--user", SERVERLESS_USER, "--pass", SERVERLESS_PASSWORD, "--no-auth-warning")
        r = redis_cli_c(vpc, ex, "SET t11:self:1 v1\nGET t11:self:1\n", *auth)
        assert replies(r.stdout) == ["OK", "v1"], r.stdout + r.stderr
    finally:
        assert held.interrupt() == 0


def test_serverless_redis_py_child_without_credentials(vpc):
    r = vpc.run_on_laptop(
        serverless_env(vpc), CLOSEUP_OPS, "tunnel", "--", sys.executable, "-c", REDIS_PY_CHILD
    )
    assert r.returncode == 11, r.stderr
    assert r.stdout.split() == ["1", "true", "false"]  # one endpoint holds every slot


def test_serverless_wrong_password_fails_before_the_child_without_leaking_it(vpc, tmp_path):
    env = {**serverless_env(vpc), "REDIS_PASSWORD": "wrong-Pa55-0451"}
    marker = tmp_path / "ran"
    r = vpc.run_on_laptop(env, CLOSEUP_OPS, "tunnel", "--", "touch", str(marker))
    assert r.returncode == 4, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "wrong-Pa55-0451" not in r.stdout + r.stderr and not marker.exists()


def commandstat_calls(text: str, command: str) -> int:
    for line in text.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_serverless_reader_endpoint_has_a_fixed_local_port_that_reads_from_the_reader(vpc):
    """AWS: a client that cannot route reads itself (valkey-java, older Jedis) is configured
    with port 6380 for reads. Through the tunnel that is the printed REDIS_READER_PORT, the
    next local port; CLUSTER SLOTS hands topology clients the same listener."""
    held = TextTunnel(vpc, serverless_env(vpc), "--local-port", "17010")  # not the cache's
    try:
        ex = held.exports
        reader = ex["REDIS_READER_PORT"]
        assert (ex["REDIS_PORT"], reader) == ("17010", "17011")
        said = f"reader endpoint (port 6380 on AWS; reads after READONLY): 127.0.0.1:{reader}"
        assert any(said in line for line in held.out), held.out
        wrote = redis_cli_c(vpc, ex, "SET t11:reader:1 r1\nWAIT 1 5000\n")
        assert replies(wrote.stdout) == ["OK", "1"], wrote.stdout + wrote.stderr
        before = vpc.serverless_cli("INFO", "commandstats", port=SERVERLESS_READER_PORT)
        on_reader = {**ex, "REDIS_PORT": reader}
        r = redis_cli_c(vpc, on_reader, "READONLY\nGET t11:reader:1\n")
        assert replies(r.stdout) == ["OK", "r1"], r.stdout + r.stderr
        after = vpc.serverless_cli("INFO", "commandstats", port=SERVERLESS_READER_PORT)
        assert commandstat_calls(after, "get") == commandstat_calls(before, "get") + 1
        slots = redis_cli_c(vpc, ex, "CLUSTER SLOTS\n").stdout.split()
        assert reader in slots and str(SERVERLESS_READER_PORT) not in slots, slots
        assert "127.0.0.1" in slots and SERVERLESS_NAME not in slots
    finally:
        assert held.interrupt() == 0
