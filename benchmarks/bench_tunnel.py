"""Benchmark: `closeup-ops tunnel` (the any-client proxy) vs OpenSSH `ssh -N -L` to one node.

    flock /tmp/cuo-bench.lock .venv/bin/python benchmarks/bench_tunnel.py [--rounds 5]
        [--pings 2000] [--gets 40] [--requests 100000] [--vpc-rounds 3]
        [--vpc-requests 1000000] [--no-vpc | --only-vpc]

Part 1, on loopback: its own redis-server in cluster mode (one node holding every slot, so
`tunnel` serves it through the proxy: command pairing and topology rewriting on) and its own
sshd, stopped by PID at the end. Each round runs every side once, interleaved, in separate
processes, the order rotating; medians over the rounds are compared with ssh -L's:

  ssh -L        OpenSSH `ssh -N -L` to the node (the anchor)
  closeup-ops   `closeup-ops tunnel` (the console script, as a user runs it): the proxy,
                dialling through the OpenSSH engine's dynamic forward
  co-auth       the same, the tunnel holding an ACL user's password (REDIS_USERNAME /
                REDIS_PASSWORD): it logs each upstream connection in, clients send no AUTH
  co-paramiko   the same as closeup-ops with CLOSEUP_OPS_TUNNEL_ENGINE=paramiko (no `ssh`)
  proxy-only    the proxy alone, dialling the node with plain TCP: no SSH (reference: what
                the proxy itself costs)
  direct        no tunnel (reference)

Workloads: PING p50 over --pings round trips (redis-py); GET of a 1 MB value, MB/s over
--gets GETs (every reply checked byte for byte); `redis-benchmark -P 16 -t set,get -n
--requests` ops/s. Targets: p50 <= 1.5x ssh's; MB/s >= 0.5x; ops/s >= 0.5x.

Part 2, as root only: the VPC of the tunnel tests (tests/helpers/netns.py: network
namespaces, a 3-primary + 3-replica TLS cluster announcing names, the bastion's sshd) and
`redis-benchmark --cluster -t set,get` run inside the private network (TLS, straight to the
nodes) beside the same command from the laptop side through `closeup-ops tunnel`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from helpers.sshd import start_sshd  # noqa: E402

from closeup_ops.local.cluster import free_cluster_port  # noqa: E402
from closeup_ops.local.servers import free_port, redis_cli, start_redis  # noqa: E402

CLOSEUP_OPS = str(Path(sys.executable).with_name("closeup-ops"))
VALUE = os.urandom(1 << 20)
SIDES = ("ssh -L", "closeup-ops", "co-auth", "co-paramiko", "proxy-only", "direct")
# co-auth: the tunnel holds an ACL user's credentials and logs every upstream connection in
# (the serverless case: clients send no AUTH), which also arms its re-login after RESET
AUTH_USER, AUTH_PASSWORD = "bench", "bench-pw-t5"
PROXY_ONLY = """
import signal, socket, sys, threading
from closeup_ops.connect.tunnel.proxy import NodeProxy, Upstream
proxy = NodeProxy(lambda h, p: socket.create_connection((h, p)), Upstream(), cluster=True)
proxy.start()
proxy.add("127.0.0.1", int(sys.argv[1]), int(sys.argv[2]))
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
signal.sigwait([signal.SIGINT, signal.SIGTERM])
proxy.close()
"""
METRICS = ("p50_us", "get_mbs", "set_ops", "get_ops")


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"forwarder exited {proc.returncode} (see forwarders.log)")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


def redis_benchmark(args: list[str], prefix: list[str] | None = None) -> dict[str, float]:
    """ops/s per test from `redis-benchmark ... --csv`."""
    out = subprocess.run(
        [*(prefix or []), "redis-benchmark", *args, "--csv"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    rates = {}
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] in ("SET", "GET"):
            rates[cells[0]] = float(cells[1])
    if set(rates) != {"SET", "GET"}:
        raise RuntimeError(f"no SET/GET rate in: {out.stdout[-300:]}")
    return rates


def measure(port: int, pings: int, gets: int, requests: int) -> dict[str, float]:
    client = redis.Redis(port=port, socket_timeout=30)
    client.ping()
    latencies = []
    for _ in range(pings):
        start = time.perf_counter()
        client.ping()
        latencies.append(time.perf_counter() - start)
    digest = hashlib.sha256(VALUE).digest()
    start = time.perf_counter()
    for _ in range(gets):
        if hashlib.sha256(client.get("t5:bench:1mb")).digest() != digest:
            raise AssertionError("GET through the tunnel returned different bytes")
    seconds = time.perf_counter() - start
    client.close()
    rates = redis_benchmark(
        ["-h", "127.0.0.1", "-p", str(port), "-P", "16", "-t", "set,get", "-n", str(requests)]
    )
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "get_mbs": gets * len(VALUE) / seconds / 1e6,
        "set_ops": rates["SET"],
        "get_ops": rates["GET"],
    }


def tunnel_env(sshd, host: str, port: int, **more: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_HOST=host,
        REDIS_PORT=str(port),
        BASTION_HOST=sshd.host,
        BASTION_PORT=str(sshd.port),
        BASTION_USER=sshd.user,
        BASTION_KEY=str(sshd.client_key),
        BASTION_KNOWN_HOSTS=str(sshd.known_hosts),
        **more,
    )
    return env


def start_side(side: str, sshd, redis_port: int, local: int, log: Path) -> subprocess.Popen | None:
    if side == "ssh -L":
        cmd = [
            "ssh", "-N", "-F", "/dev/null", "-p", str(sshd.port), "-i", str(sshd.client_key),
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "BatchMode=yes",
            "-L", f"127.0.0.1:{local}:127.0.0.1:{redis_port}", f"{sshd.user}@127.0.0.1",
        ]  # fmt: skip
        env = dict(os.environ)
    elif side in ("closeup-ops", "co-paramiko", "co-auth"):
        engine = "paramiko" if side == "co-paramiko" else "openssh"
        more = {"REDIS_USERNAME": AUTH_USER, "REDIS_PASSWORD": AUTH_PASSWORD}
        env = tunnel_env(
            sshd,
            "127.0.0.1",
            redis_port,
            CLOSEUP_OPS_TUNNEL_ENGINE=engine,
            **(more if side == "co-auth" else {}),
        )
        cmd = [CLOSEUP_OPS, "tunnel", "--json", "--local-port", str(local)]
    elif side == "proxy-only":
        env = dict(os.environ)
        cmd = [sys.executable, "-c", PROXY_ONLY, str(redis_port), str(local)]
    else:
        return None
    return subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=log.open("ab"), stderr=log.open("ab")
    )


def stop_side(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # as Ctrl-C
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def loopback(args) -> dict[str, list[dict[str, float]]]:
    sides = args.sides.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-tunnel-"))
    server = start_redis(work / "redis", "--cluster-enabled", "yes", port=free_cluster_port())
    sshd = start_sshd(work / "sshd")
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    try:
        redis_cli(server, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        acl = ["ACL", "SETUSER", AUTH_USER, "on", f">{AUTH_PASSWORD}", "~*", "&*", "+@all"]
        redis_cli(server, *acl)
        deadline = time.monotonic() + 30
        while "cluster_state:ok" not in redis_cli(server, "CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster did not come up")
            time.sleep(0.05)
        redis.Redis(port=server.port).set("t5:bench:1mb", VALUE)
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(sides)  # rotate: no side always first
            for side in sides[shift:] + sides[:shift]:
                local = server.port if side == "direct" else free_port()
                proc = start_side(side, sshd, server.port, local, work / "forwarders.log")
                try:
                    wait_port(local, proc)
                    if side == "co-auth":  # the tunnel's login, not the default user
                        who = redis.Redis(port=local, socket_timeout=30).acl_whoami()
                        assert who == AUTH_USER, f"co-auth runs as {who!r}"
                    results[side].append(measure(local, args.pings, args.gets, args.requests))
                finally:
                    stop_side(proc)
                r = results[side][-1]
                print(
                    f"round {round_no}  {side:12s} p50 {r['p50_us']:7.1f} us  "
                    f"GET 1MB {r['get_mbs']:7.1f} MB/s  -P16 SET {r['set_ops']:9.0f} "
                    f"GET {r['get_ops']:9.0f} ops/s",
                    flush=True,
                )
    finally:
        server.stop()
        sshd.stop()
    return results


def report(results: dict[str, list[dict[str, float]]], args) -> bool:
    med = {
        side: {m: statistics.median(r[m] for r in runs) for m in METRICS}
        for side, runs in results.items()
        if runs
    }
    print(
        f"\nmedians over {args.rounds} rounds ({args.pings} PINGs, {args.gets} x GET 1 MB, "
        f"redis-benchmark -P 16 -t set,get -n {args.requests}):"
    )
    print(
        f"{'side':12s} {'p50 us':>8s} {'MB/s':>7s} {'SET ops/s':>10s} {'GET ops/s':>10s}   "
        "vs ssh -L: p50 / MB/s / SET / GET"
    )
    anchor = med.get("ssh -L")
    for side, m in med.items():
        ratio = ""
        if anchor:
            ratio = " / ".join(f"{m[k] / anchor[k]:.2f}x" for k in METRICS)
        print(
            f"{side:12s} {m['p50_us']:8.1f} {m['get_mbs']:7.1f} {m['set_ops']:10.0f} "
            f"{m['get_ops']:10.0f}   {ratio}"
        )
    if not (anchor and "closeup-ops" in med):
        return True
    m = med["closeup-ops"]
    ok = (
        m["p50_us"] <= 1.5 * anchor["p50_us"]
        and m["get_mbs"] >= 0.5 * anchor["get_mbs"]
        and min(m["set_ops"] / anchor["set_ops"], m["get_ops"] / anchor["get_ops"]) >= 0.5
    )
    print(
        f"\ncloseup-ops tunnel: p50 {m['p50_us'] / anchor['p50_us']:.2f}x (<= 1.5x), "
        f"1 MB GET {m['get_mbs'] / anchor['get_mbs']:.2f}x (>= 0.5x), -P 16 SET "
        f"{m['set_ops'] / anchor['set_ops']:.2f}x / GET {m['get_ops'] / anchor['get_ops']:.2f}x "
        f"(>= 0.5x): {'PASS' if ok else 'FAIL'}"
    )
    return ok


# --- part 2: redis-benchmark --cluster in the VPC -------------------------------------------


def vpc_cluster(args) -> None:
    from helpers.netns import (
        DEMO_ENTRY,
        DEMO_NODES,
        DEMO_PORT,
        Vpc,
        build_demo_cluster,
        build_network,
        netns_unavailable,
        remove,
        start_bastion,
    )

    reason = netns_unavailable()
    if reason:
        print(f"\nVPC part skipped: {reason}")
        return
    pid = os.getpid()
    work = Path(tempfile.mkdtemp(prefix="bench-vpc-"))
    env = Vpc(vpc=f"cuobv{pid}", laptop=f"cuobl{pid}", workdir=work)
    # Enough requests that the 150 connections' set-up (stdio forward + TLS via SSH) is amortised.
    bench = ["-t", "set,get", "-n", str(args.vpc_requests), "-P", "16", "-c", "50"]
    rates: dict[str, list[dict[str, float]]] = {"inside the VPC": [], "through tunnel": []}
    held = None
    try:
        build_network(env)
        build_demo_cluster(env)
        start_bastion(env)
        tun_env = tunnel_env(
            env.sshd, DEMO_ENTRY, DEMO_PORT, REDIS_TLS="true", REDIS_CA_CERT=str(env.demo_ca)
        )
        local = free_port()
        held = subprocess.Popen(
            env.on_laptop(CLOSEUP_OPS, "tunnel", "--json", "--local-port", str(local)),
            env=tun_env,
            stdin=subprocess.DEVNULL,
            stdout=(work / "tunnel.log").open("ab"),
            stderr=(work / "tunnel.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while (
            b"export" not in (work / "tunnel.log").read_bytes()
            and b'"exports"' not in (work / "tunnel.log").read_bytes()
        ):
            if held.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "tunnel.log").read_text())
            time.sleep(0.1)
        inside = ["--cluster", "-h", DEMO_NODES[0][1], "-p", str(DEMO_PORT), "--tls"]
        inside += ["--cacert", str(env.demo_ca), *bench]
        through = ["--cluster", "-h", "127.0.0.1", "-p", str(local), *bench]
        for round_no in range(1, args.vpc_rounds + 1):
            order = [("inside the VPC", inside, env.in_vpc()), ("through tunnel", through, None)]
            if round_no % 2 == 0:
                order.reverse()
            for name, cmd, _ in order:
                prefix = env.in_vpc() if name == "inside the VPC" else env.on_laptop()
                rates[name].append(redis_benchmark(cmd, prefix))
                r = rates[name][-1]
                print(
                    f"vpc round {round_no}  {name:15s} SET {r['SET']:9.0f}  GET {r['GET']:9.0f}"
                    " ops/s",
                    flush=True,
                )
    finally:
        if held is not None:
            stop_side(held)
        remove(env)
    med = {
        k: {t: statistics.median(r[t] for r in v) for t in ("SET", "GET")} for k, v in rates.items()
    }
    a, t = med["inside the VPC"], med["through tunnel"]
    print(
        f"\nredis-benchmark --cluster {' '.join(bench)} (medians of {args.vpc_rounds}):\n"
        f"  inside the VPC (TLS, straight to the nodes): SET {a['SET']:.0f}  GET {a['GET']:.0f}\n"
        f"  laptop side through closeup-ops tunnel:      SET {t['SET']:.0f}  GET {t['GET']:.0f}"
        f"  ({t['SET'] / a['SET']:.2f}x / {t['GET'] / a['GET']:.2f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--gets", type=int, default=40)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--vpc-rounds", type=int, default=3)
    parser.add_argument("--vpc-requests", type=int, default=1_000_000)
    parser.add_argument("--no-vpc", action="store_true")
    parser.add_argument("--only-vpc", action="store_true")
    args = parser.parse_args()
    ok = True
    if not args.only_vpc:
        ok = report(loopback(args), args)
    if not args.no_vpc:
        vpc_cluster(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
