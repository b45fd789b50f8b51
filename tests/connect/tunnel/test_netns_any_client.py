"""Any client through `closeup-ops tunnel`, in the VPC made of network namespaces (layout in
tests/helpers/netns.py): the cache is reachable only through the bastion, node names resolve
only on its side, and TLS certificates name DNS names only (a wildcard for the cluster).

Clients that know nothing of closeup-ops: `redis-cli -c` (as the tunnel's child and from
"another terminal" against a held tunnel), a plain redis-py RedisCluster, redis-benchmark
--cluster; the serverless-like endpoint with the tunnel authenticating and with the client
sending AUTH itself; a failover during a run; an SSH drop; Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers.bastion import CLOSEUP_OPS, HeldTunnel
from helpers.bastion import bastion_env as sshd_bastion_env
from helpers.netns import (
    DEMO_ENTRY,
    DEMO_NODES,
    DEMO_PORT,
    LAPTOP_IP,
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


# --- faults: a failover during a run, an SSH drop, Ctrl-C --------------------------------

WRITER = """
import sys, time
from redis.cluster import RedisCluster
from redis.exceptions import RedisError
client = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=3)
i = 0
deadline = time.monotonic() + 120
while time.monotonic() < deadline and sys.stdin.readable():
    i += 1
    try:
        client.set("{t11fo}:last", i)
        print("ok", i, flush=True)
    except RedisError as exc:
        print("error", i, type(exc).__name__, flush=True)
        time.sleep(0.1)
    time.sleep(0.02)
"""


def test_failover_during_a_run_reaches_the_new_primary(vpc):
    held = TextTunnel(vpc, demo_env(vpc))
    writer = subprocess.Popen(
        vpc.on_laptop(sys.executable, "-c", WRITER, held.exports["REDIS_PORT"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(writer.stdout), daemon=True).start()
    try:
        wait_until(lambda: sum(ln.startswith("ok") for ln in lines) >= 20, "writes before")
        # The replica of the shard holding {t11fo} takes over.
        slot = vpc.demo_cli(DEMO_NODES[0][0], "CLUSTER", "KEYSLOT", "{t11fo}:last").strip()
        owner = _owner(vpc, int(slot))
        replica = _replica_of(vpc, owner)
        assert "OK" in vpc.demo_cli(replica, "CLUSTER", "FAILOVER")
        wait_until(
            lambda: vpc.demo_cli(replica, "ROLE").startswith("master"), "failover", timeout=60
        )
        done = len(lines)
        wait_until(
            lambda: sum(ln.startswith("ok") for ln in lines[done:]) >= 20,
            "writes after the failover",
            timeout=60,
        )
        last = max(int(ln.split()[1]) for ln in lines if ln.startswith("ok"))
    finally:
        writer.kill()
        writer.wait(10)
        held.interrupt()
    # The writes after the failover landed on the new primary.
    assert int(vpc.demo_cli(replica, "GET", "{t11fo}:last").strip()) >= last - 1
    assert _owner(vpc, int(slot)) == replica


def _cluster_nodes(vpc) -> list[list[str]]:
    out = vpc.demo_cli(DEMO_NODES[0][0], "CLUSTER", "NODES")
    return [line.split() for line in out.splitlines() if line.strip()]


def _owner(vpc, slot: int) -> str:
    for fields in _cluster_nodes(vpc):
        for part in fields[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return fields[1].split(",")[1]
    raise AssertionError(f"no owner for slot {slot}")


def _replica_of(vpc, primary: str) -> str:
    nodes = _cluster_nodes(vpc)
    primary_id = next(f[0] for f in nodes if f[1].split(",")[1] == primary)
    return next(f[1].split(",")[1] for f in nodes if f[3] == primary_id)


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_ssh_drop_reconnects_on_the_same_ports(vpc, engine):
    held = HeldTunnel(
        demo_env(vpc, CLOSEUP_OPS_TUNNEL_ENGINE=engine),
        prefix=vpc.on_laptop(),
    )
    try:
        served = {n["node"] for n in held.doc["nodes"]}
        # the configuration endpoint, then 3 primaries + 3 replicas, each by its name
        expected = {f"{DEMO_ENTRY}:{DEMO_PORT}"} | {f"{n}:{DEMO_PORT}" for n, _ in DEMO_NODES}
        assert served == expected, (held.doc, held.err_lines)
        ports = [int(n["local"].rsplit(":", 1)[1]) for n in held.doc["nodes"]]
        exports = held.doc["exports"]
        first = redis_cli_c(vpc, exports, set_commands("t11:drop:", 10))
        assert replies(first.stdout) == ["OK"] * 10
        assert vpc.sshd.kill_sessions() >= 1
        held.wait_for_err("dropped")
        held.wait_for_err("tunnel is back")
        # Clients reconnect to the same local ports: the entry and every node.
        r = redis_cli_c(vpc, exports, "".join(f"GET t11:drop:{i}\n" for i in range(10)))
        assert replies(r.stdout) == [f"v{i}" for i in range(10)], r.stdout + r.stderr
        for port in ports:
            ping = vpc.run_on_laptop({}, "redis-cli", "-p", str(port), "PING")
            assert ping.stdout.strip() == "PONG", (port, ping.stdout, ping.stderr)
    finally:
        assert held.interrupt() == 0


def pgrep(pattern: str) -> subprocess.CompletedProcess:
    # `--`: the pattern may start with "-"; exit 1 means nothing matched
    return subprocess.run(["pgrep", "-a", "-f", "--", pattern], capture_output=True, text=True)


def test_ctrl_c_closes_every_listener_and_the_ssh_child(vpc):
    held = HeldTunnel(demo_env(vpc), prefix=vpc.on_laptop())
    try:
        ports = {int(n["local"].rsplit(":", 1)[1]) for n in held.doc["nodes"]}
        assert len(ports) == 7 and ports <= vpc.listening(vpc.laptop)
        # this tunnel's ssh child, by the SOCKS port on its command line
        child = subprocess.run(
            ["pgrep", "-P", str(held.proc.pid), "-x", "ssh"], capture_output=True, text=True
        ).stdout.split()
        assert len(child) == 1, child
        argv = open(f"/proc/{child[0]}/cmdline").read().split("\0")
        ssh_child = f"-D {argv[argv.index('-D') + 1]} "
        assert pgrep(ssh_child).returncode == 0  # the pattern finds it while it runs
    finally:
        code = held.interrupt()
    assert code == 0
    assert pgrep(ssh_child).returncode == 1, pgrep(ssh_child).stdout
    assert not ports & vpc.listening(vpc.laptop)


# --- binding elsewhere than loopback ---------------------------------------------------------


def test_non_loopback_bind_is_refused_unless_asked(vpc):
    env = demo_env(vpc)
    r = vpc.run_on_laptop(env, CLOSEUP_OPS, "tunnel", "--bind", LAPTOP_IP, "--", "true")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--allow-remote-bind" in lines[0], r.stderr
    held = TextTunnel(vpc, env, "--bind", LAPTOP_IP, "--allow-remote-bind")
    try:
        assert any("warning" in ln and "ANYONE" in ln and LAPTOP_IP in ln for ln in held.err)
        assert held.exports["REDIS_HOST"] == LAPTOP_IP
        # Reachable from another machine (the vpc side of the veth), as warned.
        got = subprocess.run(
            vpc.in_vpc("redis-cli", "-h", LAPTOP_IP, "-p", held.exports["REDIS_PORT"], "PING"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert got.stdout.strip() == "PONG", got.stdout + got.stderr
    finally:
        assert held.interrupt() == 0
