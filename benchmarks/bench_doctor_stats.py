"""`doctor` and `stats` against the by-hand steps they replace, in one run.

    .venv/bin/python benchmarks/bench_doctor_stats.py [--rounds 9]

Starts its own redis-server with known hits (100) and misses (50), then, alternating each
round so drift in machine load hits both sides:

  doctor --no-aws --json   vs  getent hosts + redis-cli ping + redis-cli info (the guide's
                               troubleshooting by hand: DNS, connect, AUTH/PING, facts)
  stats --no-aws --json    vs  redis-cli info
  (and `ping --json`, the tool's own start-up floor, to show what the checks add)

Each answer is checked (doctor: 8 checks ok; stats: the hits and misses redis-cli sees).
Then the failure paths that the by-hand steps cannot bound or tell apart:

  doctor against a listener that never answers, REDIS_TIMEOUT=1: must end within 3 s
  doctor with --tls against a plain server, REDIS_TIMEOUT=1: must name the mismatch
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import VENV_BIN, clean_env, interleaved, median_ms  # noqa: E402

from closeup_ops.local.servers import start_redis  # noqa: E402

TOOL = str(VENV_BIN / "closeup-ops")
HITS, MISSES = 100, 50


def prepare(port: int) -> None:
    import redis

    r = redis.Redis(port=port)
    for i in range(HITS):
        r.set(f"bench:{i}", "v")
        r.get(f"bench:{i}")
    for i in range(MISSES):
        r.get(f"bench:missing:{i}")
    r.close()


def check_answers(env: dict[str, str], port: int) -> None:
    doc = json.loads(
        subprocess.run(
            [TOOL, "doctor", "--no-aws", "--json"], env=env, capture_output=True, check=True
        ).stdout
    )
    assert doc["counts"]["ok"] == 8 and doc["passed"], doc
    out = subprocess.run(
        [TOOL, "stats", "--no-aws", "--json", "--min-hit-rate", "0"],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    info = json.loads(out)["info"]
    raw = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "stats"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)
    # each stats run itself adds no lookups: the numbers match redis-cli's
    assert info["keyspace_hits"] == int(fields["keyspace_hits"]) == HITS, info
    assert info["keyspace_misses"] == int(fields["keyspace_misses"]) == MISSES, info


def silent_listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the handshake; nobody ever reads
    return server


def failure_paths(port: int) -> list[str]:
    lines = []
    listener = silent_listener()
    try:
        env = clean_env(
            REDIS_HOST="127.0.0.1", REDIS_PORT=str(listener.getsockname()[1]), REDIS_TIMEOUT="1"
        )
        start = time.perf_counter()
        proc = subprocess.run([TOOL, "doctor", "--no-aws", "--json"], env=env, capture_output=True)
        elapsed = time.perf_counter() - start
        tls = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["tls"]
        assert proc.returncode == 6 and "no reply to PING" in tls["evidence"], tls
        assert elapsed < 3, elapsed
        lines.append(
            f"doctor, silent listener, REDIS_TIMEOUT=1: {elapsed * 1000:.0f} ms, exit 6 "
            "(redis-cli ping would wait forever: it has no read timeout)"
        )
    finally:
        listener.close()
    env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port), REDIS_TIMEOUT="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [TOOL, "doctor", "--no-aws", "--json", "--tls"], env=env, capture_output=True
    )
    elapsed = time.perf_counter() - start
    tls = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["tls"]
    assert proc.returncode == 6 and "does not use TLS" in tls["evidence"], tls
    lines.append(
        f"doctor --tls against a plain server, REDIS_TIMEOUT=1: {elapsed * 1000:.0f} ms "
        "(one handshake timeout, then a plain PING proves the mismatch)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-doctor-"))
    server = start_redis(workdir / "redis")
    try:
        prepare(server.port)
        env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(server.port))
        check_answers(env, server.port)
        by_hand = (
            f"getent hosts 127.0.0.1 >/dev/null && redis-cli -p {server.port} ping "
            f">/dev/null && redis-cli -p {server.port} info >/dev/null"
        )
        times = interleaved(
            {
                "doctor": [TOOL, "doctor", "--no-aws", "--json"],
                "by hand": ["sh", "-c", by_hand],
                "stats": [TOOL, "stats", "--no-aws", "--json", "--min-hit-rate", "0"],
                "redis-cli info": ["redis-cli", "-p", str(server.port), "info"],
                "ping (start-up)": [TOOL, "ping", "--json"],
            },
            args.rounds,
            env=env,
        )
        med = {name: median_ms(values) for name, values in times.items()}
        print(f"rounds: {args.rounds} (medians)")
        for name, value in med.items():
            print(f"  {name:<16} {value:8.1f} ms")
        print(f"doctor / by hand:        {med['doctor'] / med['by hand']:.1f}x")
        print(f"stats / redis-cli info:  {med['stats'] / med['redis-cli info']:.1f}x")
        base = med["ping (start-up)"]
        print(
            f"over `closeup-ops ping` (Python start-up + redis-py): doctor "
            f"+{med['doctor'] - base:.0f} ms, stats +{med['stats'] - base:.0f} ms"
        )
        for line in failure_paths(server.port):
            print(line)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
