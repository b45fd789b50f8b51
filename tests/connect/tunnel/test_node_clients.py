"""The two main Node.js cluster clients, ioredis (`Cluster`) and node-redis (`createCluster`,
RESP2 and RESP3), through the tunnel's local proxy: the in-process NodeProxy against a real
3-primary cluster with replicas whose nodes announce names only (as ElastiCache does with
in-transit encryption), and the whole `closeup-ops tunnel -- node ...` path in the VPC of
network namespaces (the TLS cluster and the serverless-like endpoint).

The clients are small scripts in tests/clients/node (driver.js: JSON ops in, one JSON line
per op out), installed by scripts/bootstrap (`npm ci --prefix tests/clients/node`). Without
node or those packages the tests skip, saying why; with CLOSEUP_OPS_REQUIRE_NODE=1 (CI) they
fail. Every expected value comes from the test's own writes or from the servers, asked
directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
from helpers.bastion import CLOSEUP_OPS
from helpers.resp_proxy import cluster_proxy, wait_until
from helpers.tunnel_clients import assert_keys_on_every_primary, demo_env, serverless_env

from closeup_ops.local.cluster import start_cluster

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
REQUIRE_ENV = "CLOSEUP_OPS_REQUIRE_NODE"
IOREDIS, NODE_REDIS = "ioredis_cluster.js", "node_redis_cluster.js"
CLIENTS = [pytest.param((IOREDIS, 2), id="ioredis")] + [
    pytest.param((NODE_REDIS, resp), id=f"node-redis-resp{resp}") for resp in (2, 3)
]
NAMES = [f"node{i}.node-clients.closeup.test" for i in range(6)]


def node_unavailable() -> str | None:
    node = shutil.which("node")
    if not node:
        return "node is not installed (Node.js >= 18.19 runs the ioredis/node-redis tests)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if tuple(int(p) for p in version.strip().lstrip("v").split(".")[:2]) < (18, 19):
        return f"node {version.strip()} is older than 18.19 (what node-redis 5 needs)"
    for package in ("ioredis", "redis"):
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            return f"{package} is not installed: run scripts/bootstrap (it runs `npm ci`)"
    return None


@pytest.fixture(scope="session", autouse=True)  # before the session's `vpc` is built
def _node():
    reason = node_unavailable()
    if reason and os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{REQUIRE_ENV}=1 but the Node.js client tests cannot run: {reason}")
    if reason:
        pytest.skip(reason)


class NodeClient:
    """One client script, fed JSON ops on stdin; each op's reply is its JSON line. The
    script ends itself after CLIENT_TIMEOUT_MS, so a hung client fails, never hangs."""

    def __init__(self, script: str, port: int, resp: int = 2, name: str = ""):
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port), CLIENT_RESP=str(resp))
        env.update(CLIENT_NAME=name)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )

    def op(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        doc = self._line()
        assert doc["op"] == op, doc
        return doc

    def cmds(self, *cmds: list) -> list:
        return self.op("cmds", cmds=list(cmds))["replies"]

    def end(self) -> list[str]:
        """Close stdin: the script closes its client; the error events it saw."""
        self.proc.stdin.close()
        doc = self._line()
        assert doc["op"] == "end" and self.proc.wait(20) == 0, doc
        return doc["errors"]

    def _line(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(20)
            self.stderr.seek(0)
            raise AssertionError(f"client exited {self.proc.returncode}: {self.stderr.read()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.stderr.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(
        tmp_path_factory.mktemp("node-clients"),
        3,
        1,
        hostnames=NAMES,
        preferred_endpoint="hostname",
    )
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster):
    yield from cluster_proxy(NAMES, cluster)


@pytest.fixture
def client():
    made: list[NodeClient] = []

    def start(*args, **kw) -> NodeClient:
        made.append(NodeClient(*args, **kw))
        return made[-1]

    yield start
    for c in made:
        c.close()


# --- what the servers say, asked directly ----------------------------------------------


def direct(port: int) -> redis.Redis:
    return redis.Redis(port=port, protocol=2, socket_timeout=10)  # RESP3 marks the clients


def slot_owners(port: int) -> dict[int, int]:
    """slot -> the real port of its primary, as the node on `port` sees it."""
    owners = {}
    for start, end, primary, *_ in direct(port).execute_command("CLUSTER", "SLOTS"):
        owners.update(dict.fromkeys(range(start, end + 1), int(primary[1])))
    return owners


def keyslot(cluster, key: str) -> int:
    return direct(cluster.nodes[0].port).execute_command("CLUSTER", "KEYSLOT", key)


def owner(cluster, key: str) -> int:
    return slot_owners(cluster.nodes[0].port)[keyslot(cluster, key)]


def stored(cluster, keys) -> dict[str, tuple[int, bytes | None]]:
    """key -> (the real port of its primary, the value there), in two round trips a node."""
    ask = direct(cluster.nodes[0].port).pipeline(transaction=False)
    for key in keys:
        ask.execute_command("CLUSTER", "KEYSLOT", key)
    owners = slot_owners(cluster.nodes[0].port)
    on = {key: owners[slot] for key, slot in zip(keys, ask.execute(), strict=True)}
    found = {}
    for port in set(on.values()):
        mine = [key for key in keys if on[key] == port]
        get = direct(port).pipeline(transaction=False)
        for key in mine:
            get.get(key)
        found.update(zip(mine, get.execute(), strict=True))
    return {key: (on[key], found[key]) for key in keys}


def primary_ports(cluster) -> set[int]:
    return {n.port for n in cluster.nodes if direct(n.port).info("replication")["role"] == "master"}


def stat(port: int, section: str, name: str) -> int:
    entry = direct(port).info(section).get(name, {})
    return int(entry.get("calls", entry.get("count", 0)))


def assert_nodes_are_local(nodes: list[dict], cluster, proxy) -> None:
    """The client knows every node, each by its own local listener, none by a real port;
    its primaries' listeners lead to the real primaries."""
    real = {n.port for n in cluster.nodes}
    to_real = {local: port for (_, port), local in proxy.nodes().items()}
    assert {n["host"] for n in nodes} == {"127.0.0.1"}, nodes
    assert len({n["port"] for n in nodes}) == len(nodes) == len(cluster.nodes), nodes
    assert {n["port"] for n in nodes} <= set(to_real) and not {n["port"] for n in nodes} & real
    masters = {to_real[n["port"]] for n in nodes if n["role"] == "master"}
    assert masters == primary_ports(cluster)
    assert proxy.dial_log.calls and {host for host, _ in proxy.dial_log.calls} <= set(NAMES)


# --- the in-process proxy ------------------------------------------------------------------


@pytest.mark.parametrize("which", CLIENTS)
def test_keys_on_every_primary_pipeline_and_multi(cluster, proxy, client, which):
    script, resp = which
    prefix = f"{script[:5]}{resp}:"
    keys = {f"{prefix}{i}": f"v{i}" for i in range(300)}
    pipe, tx = f"{{{prefix}pipe}}", f"{{{prefix}tx}}"
    tx_owner = owner(cluster, tx)
    exec_before = stat(tx_owner, "commandstats", "cmdstat_exec")

    name = f"node-clients-{prefix[:-1]}"
    c = client(script, proxy.entry, resp, name)
    assert c.cmds(*(["SET", k, v] for k, v in keys.items())) == ["OK"] * len(keys)
    assert c.cmds(*(["GET", k] for k in keys)) == list(keys.values())
    piped = c.op("pipeline", cmds=[["INCR", f"{pipe}n"]] * 50 + [["SET", pipe, "p"], ["GET", pipe]])
    assert piped["replies"] == [*range(1, 51), "OK", "p"]
    multi = c.op("multi", cmds=[["SET", tx, "t"], ["INCR", f"{tx}n"], ["GET", tx]])
    assert multi["replies"] == ["OK", 1, "t"]
    nodes = c.op("nodes")["nodes"]
    speaks = [
        [cl["resp"] for cl in direct(p).client_list() if cl["name"] == name]
        for p in primary_ports(cluster)
    ]
    assert c.end() == []

    assert_nodes_are_local(nodes, cluster, proxy)
    there = stored(cluster, list(keys))
    assert {k: value for k, (_, value) in there.items()} == {k: v.encode() for k, v in keys.items()}
    assert {port for port, _ in there.values()} == primary_ports(cluster)  # keys on every one
    assert direct(owner(cluster, pipe)).get(f"{pipe}n") == b"50"
    assert stat(tx_owner, "commandstats", "cmdstat_exec") == exec_before + 1  # a real EXEC
    # the client's own connections (CLIENT SETNAME went through) on every primary, all in
    # the protocol it asked for (RESP3: its HELLO 3 went through)
    assert all(protocols and set(protocols) == {str(resp)} for protocols in speaks), speaks


def start_migration(slot: int, src: int, dst: int) -> None:
    ids = {p: direct(p).execute_command("CLUSTER", "MYID") for p in (src, dst)}
    direct(dst).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
    direct(src).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])


def finish_migration(cluster, slot: int, src: int, dst: int) -> None:
    """Move the slot's keys, hand the slot to `dst` everywhere, wait until all nodes agree."""
    keys = direct(src).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    if keys:
        direct(src).execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
    dst_id = direct(dst).execute_command("CLUSTER", "MYID")
    for port in [dst, src, *(primary_ports(cluster) - {src, dst})]:
        direct(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    wait_until(
        lambda: all(slot_owners(n.port)[slot] == dst for n in cluster.nodes), "slot handed over"
    )


@pytest.mark.parametrize("which", CLIENTS)
def test_ask_then_moved_during_a_slot_migration(cluster, proxy, client, which):
    script, resp = which
    tag = f"{{{script[:5]}{resp}:migrating}}"
    old, new = f"{tag}old", f"{tag}new"
    c = client(script, proxy.entry, resp)
    assert c.cmds(["SET", old, "1"]) == ["OK"]  # the client's map now has the slot on src
    slot, src = keyslot(cluster, old), owner(cluster, old)
    dst = min(primary_ports(cluster) - {src})
    asks, moves = (stat(src, "errorstats", f"errorstat_{e}") for e in ("ASK", "MOVED"))
    start_migration(slot, src, dst)
    try:
        # an absent key of a migrating slot: src answers -ASK, naming dst's listener
        assert c.cmds(["SET", new, "asked"], ["GET", old]) == ["OK", "1"]
    finally:
        finish_migration(cluster, slot, src, dst)
    # the client still sends the slot to src, which now answers -MOVED
    assert c.cmds(["GET", old]) == ["1"]
    assert c.cmds(["SET", old, "2"]) == ["OK"]
    nodes = c.op("nodes")["nodes"]
    assert c.end() == []

    assert stat(src, "errorstats", "errorstat_ASK") == asks + 1
    assert stat(src, "errorstats", "errorstat_MOVED") > moves
    assert direct(dst).mget(new, old) == [b"asked", b"2"]
    assert direct(src).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert_nodes_are_local(nodes, cluster, proxy)


# --- the whole tunnel, in the VPC of network namespaces -----------------------------------


def tunnel_child(vpc, env: dict, script: str, ops: list[dict], resp: int = 2):
    """`closeup-ops tunnel -- node SCRIPT` in the laptop namespace, fed `ops`; its JSON lines."""
    stdin = "".join(json.dumps(op) + "\n" for op in ops)
    env = {**env, "CLIENT_RESP": str(resp)}
    r = vpc.run_on_laptop(
        env, CLOSEUP_OPS, "tunnel", "--", "node", str(NODE_DIR / script), stdin=stdin, timeout=60
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [d["op"] for d in docs] == [op["op"] for op in ops] + ["end"], r.stdout + r.stderr
    assert docs[-1]["errors"] == [], docs[-1]
    return docs, r


def assert_own_local_listeners(nodes: list[dict]) -> None:
    """Every node the client knows is on the laptop's loopback, each on a port of its own
    (the VPC's nodes all listen on one port, on addresses the laptop cannot reach)."""
    assert {n["host"] for n in nodes} == {"127.0.0.1"}, nodes
    assert len({n["port"] for n in nodes}) == len(nodes), nodes


# two of the three clients here and two in the next test: a tunnel run costs ~1.5 s
@pytest.mark.parametrize("which", [CLIENTS[0], CLIENTS[2]])
def test_tls_cluster_through_the_tunnel(vpc, which):
    script, resp = which
    prefix = f"t-{script[:5]}{resp}:"
    keys = {f"{prefix}{i}": f"v{i}" for i in range(60)}
    tx = f"{{{prefix}tx}}"
    ops = [
        {"op": "cmds", "cmds": [["SET", k, v, "EX", "300"] for k, v in keys.items()]},
        {"op": "cmds", "cmds": [["GET", k] for k in keys]},
        {"op": "multi", "cmds": [["SET", tx, "t", "EX", "300"], ["GET", tx]]},
        {"op": "nodes"},
    ]
    docs, _ = tunnel_child(vpc, demo_env(vpc), script, ops, resp)
    assert docs[0]["replies"] == ["OK"] * len(keys)
    assert docs[1]["replies"] == list(keys.values())
    assert docs[2]["replies"] == ["OK", "t"]
    assert len(docs[3]["nodes"]) == 6
    assert_own_local_listeners(docs[3]["nodes"])
    assert_keys_on_every_primary(vpc, prefix)


@pytest.mark.parametrize("which", [CLIENTS[0], CLIENTS[1]])
def test_serverless_client_sends_no_auth(vpc, which):
    """The tunnel holds the ACL user's password; the client has none and sends no AUTH."""
    script, resp = which
    prefix = f"s-{script[:5]}{resp}:"
    keys = {f"{prefix}{i}": f"v{i}" for i in range(20)}
    ops = [
        {"op": "cmds", "cmds": [["SET", k, v, "EX", "300"] for k, v in keys.items()]},
        {"op": "cmds", "cmds": [["GET", k] for k in keys]},
        {"op": "nodes"},
    ]
    docs, _ = tunnel_child(vpc, serverless_env(vpc), script, ops, resp)
    assert docs[0]["replies"] == ["OK"] * len(keys)
    assert docs[1]["replies"] == list(keys.values())
    nodes = docs[2]["nodes"]  # one primary (the endpoint); a reader endpoint, where listed
    assert [n["role"] for n in nodes].count("master") == 1, nodes
    assert_own_local_listeners(nodes)
    stored = vpc.serverless_cli("--scan", "--pattern", f"{prefix}*").split()
    assert sorted(stored) == sorted(keys)
