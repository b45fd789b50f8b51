"""Benchmark: `closeup-ops tunnel` vs OpenSSH `ssh -N -L` through the same real sshd.

    .venv/bin/python benchmarks/bench_tunnel.py [--rounds 5] [--pings 2000] [--gets 40]

Starts its own redis-server and sshd on 127.0.0.1 (stopped by PID at the end). Each round
runs every side once, interleaved, in separate processes; the medians over the rounds are
compared with ssh -L's (the order rotates each round). Sides:

  ssh -L        OpenSSH `ssh -N -L` (the anchor)
  closeup-ops   `closeup-ops tunnel` (the console script, as a user runs it): OpenSSH engine
  co-paramiko   `closeup-ops tunnel` with CLOSEUP_OPS_TUNNEL_ENGINE=paramiko, the fallback
                where `ssh` is missing: 64 MiB window, 256 KiB packets, aes128-gcm,
                TCP_NODELAY, 256 KiB reads
  sshtunnel     sshtunnel 0.5.1 SSHTunnelForwarder with its defaults (reference)
  direct        no tunnel (reference)

Workloads: PING p50 over --pings round trips; GET of a 1 MB value, MB/s over --gets GETs
(every reply checked byte for byte). Targets: p50 <= 1.5x ssh's; throughput >= 0.5x ssh's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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

from closeup_ops.local.servers import free_port, start_redis  # noqa: E402

CLOSEUP_OPS = str(Path(sys.executable).with_name("closeup-ops"))
VALUE = os.urandom(1 << 20)
SIDES = ("ssh -L", "closeup-ops", "co-paramiko", "sshtunnel", "direct")


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


def measure(port: int, pings: int, gets: int) -> tuple[float, float]:
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
    return statistics.median(latencies) * 1e6, gets * len(VALUE) / seconds / 1e6


def start_side(side: str, sshd, redis_port: int, local: int, log: Path) -> subprocess.Popen | None:
    env = dict(os.environ)
    if side == "ssh -L":
        cmd = [
            "ssh",
            "-N",
            "-F",
            "/dev/null",
            "-p",
            str(sshd.port),
            "-i",
            str(sshd.client_key),
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "BatchMode=yes",
            "-L",
            f"127.0.0.1:{local}:127.0.0.1:{redis_port}",
            f"{sshd.user}@127.0.0.1",
        ]
    elif side in ("closeup-ops", "co-paramiko"):
        if side == "co-paramiko":
            env["CLOSEUP_OPS_TUNNEL_ENGINE"] = "paramiko"
        env.update(
            REDIS_HOST="127.0.0.1",
            REDIS_PORT=str(redis_port),
            BASTION_HOST="127.0.0.1",
            BASTION_PORT=str(sshd.port),
            BASTION_USER=sshd.user,
            BASTION_KEY=str(sshd.client_key),
            BASTION_KNOWN_HOSTS=str(sshd.known_hosts),
        )
        cmd = [CLOSEUP_OPS, "tunnel", "--json", "--local-port", str(local)]
    elif side == "sshtunnel":
        spec = json.dumps([side, sshd.port, sshd.user, str(sshd.client_key), redis_port, local])
        cmd = [sys.executable, __file__, "--serve", spec]
    else:
        return None
    return subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("ab")
    )


def stop_side(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- reference forwarders, run in their own process by --serve ---------------------------


def serve(spec: str) -> None:
    kind, ssh_port, user, key, redis_port, local = json.loads(spec)
    if kind == "sshtunnel":
        import sshtunnel

        forwarder = sshtunnel.SSHTunnelForwarder(
            ("127.0.0.1", ssh_port),
            ssh_username=user,
            ssh_pkey=key,
            remote_bind_address=("127.0.0.1", redis_port),
            local_bind_address=("127.0.0.1", local),
        )
        forwarder.start()
    time.sleep(3600)


# --- the run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--gets", type=int, default=40)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--serve")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    sides = args.sides.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-tunnel-"))
    server = start_redis(work / "redis")
    sshd = start_sshd(work / "sshd")
    results: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    try:
        redis.Redis(port=server.port).set("t5:bench:1mb", VALUE)
        for round_no in range(1, args.rounds + 1):
            # Rotate the order each round, so no side always runs first or after another.
            shift = (round_no - 1) % len(sides)
            for side in sides[shift:] + sides[:shift]:
                local = server.port if side == "direct" else free_port()
                proc = start_side(side, sshd, server.port, local, work / "forwarders.log")
                try:
                    wait_port(local, proc)
                    results[side].append(measure(local, args.pings, args.gets))
                finally:
                    stop_side(proc)
                p50, mbps = results[side][-1]
                print(
                    f"round {round_no}  {side:12s} p50 {p50:7.1f} us  GET 1MB {mbps:7.1f} MB/s",
                    flush=True,
                )
    finally:
        server.stop()
        sshd.stop()
    return report(results, args)


def report(results: dict[str, list[tuple[float, float]]], args) -> int:
    med = {
        side: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for side, runs in results.items()
        if runs
    }
    print(f"\nmedians over {args.rounds} rounds ({args.pings} PINGs, {args.gets} x GET 1 MB):")
    anchor = med.get("ssh -L")
    print(
        f"{'side':12s} {'PING p50 us':>12s} {'GET MB/s':>9s} {'p50 vs ssh':>11s} "
        f"{'MB/s vs ssh':>12s}"
    )
    for side, (p50, mbps) in med.items():
        ratio = f"{p50 / anchor[0]:10.2f}x {mbps / anchor[1]:11.2f}x" if anchor else ""
        print(f"{side:12s} {p50:12.1f} {mbps:9.1f} {ratio}")
    if anchor and "closeup-ops" in med:
        p50, mbps = med["closeup-ops"]
        ok = p50 <= 1.5 * anchor[0] and mbps >= 0.5 * anchor[1]
        print(
            f"\ncloseup-ops tunnel: p50 {p50 / anchor[0]:.2f}x ssh (target <= 1.5x), "
            f"throughput {mbps / anchor[1]:.2f}x ssh (target >= 0.5x): "
            f"{'PASS' if ok else 'FAIL'}"
        )
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
