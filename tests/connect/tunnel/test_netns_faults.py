"""Faults with a tunnel in the VPC (tests/helpers/netns.py): a failover during a run reaches
the new primary, an SSH drop reconnects on the same local ports (both engines), Ctrl-C
leaves no listener and no ssh child, and a non-loopback --bind is refused unless asked."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from helpers.bastion import CLOSEUP_OPS, HeldTunnel
from helpers.netns import DEMO_ENTRY, DEMO_NODES, DEMO_PORT, LAPTOP_IP, wait_until
from helpers.tunnel_clients import (
    KEYS,
    TextTunnel,
    demo_env,
    pgrep,
    redis_cli_c,
    replies,
    set_commands,
)

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


def test_ctrl_c_closes_every_listener_and_the_ssh_child(vpc):
    held = HeldTunnel(demo_env(vpc), prefix=vpc.on_laptop())
    try:
        ports = {int(n["local"].rsplit(":", 1)[1]) for n in held.doc["nodes"]}
        assert len(ports) == 7 and ports <= vpc.listening(vpc.laptop)
        # this tunnel's ssh child, by the control socket on its command line
        child = subprocess.run(
            ["pgrep", "-P", str(held.proc.pid), "-x", "ssh"], capture_output=True, text=True
        ).stdout.split()
        assert len(child) == 1, child
        argv = open(f"/proc/{child[0]}/cmdline").read().split("\0")
        ssh_child = next(a for a in argv if a.startswith("ControlPath="))
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
        # stderr is read by a thread of its own: the warning may land just after the export
        wait_until(
            lambda: any(
                "warning" in ln and "ANYONE" in ln and LAPTOP_IP in ln for ln in list(held.err)
            ),
            "the warning that anyone on the network can connect",
        )
        assert held.exports["REDIS_HOST"] == LAPTOP_IP
        # Reachable from another machine (the vpc side of the veth), as warned.
        got = subprocess.run(
            vpc.in_vpc("redis-cli", "-h", LAPTOP_IP, "-p", held.exports["REDIS_PORT"], "PING"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert got.stdout.strip() == "PONG", got.stdout + got.stderr
        assert any(f"plain TCP on {LAPTOP_IP}, reachable from elsewhere" in ln for ln in held.out)
        # A cluster client on that other machine is sent to the address it dialled, not to
        # 127.0.0.1 (its own loopback): every key lands, following redirects to LAPTOP_IP.
        cluster = subprocess.run(
            vpc.in_vpc("redis-cli", "-c", "-h", LAPTOP_IP, "-p", held.exports["REDIS_PORT"]),
            input="".join(f"SET t11:remote:{i} v{i}\n" for i in range(KEYS)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [ln.strip() for ln in cluster.stdout.splitlines() if ln.strip()]
        redirects = [ln for ln in lines if ln.startswith("-> Redirected")]
        assert redirects and all(f" located at {LAPTOP_IP}:" in ln for ln in redirects), lines
        assert [ln for ln in lines if not ln.startswith("->")] == ["OK"] * KEYS, lines
    finally:
        assert held.interrupt() == 0
