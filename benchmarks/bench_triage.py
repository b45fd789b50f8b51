"""`triage` against `redis-cli --bigkeys` and `--hotkeys` over 1,000,000 keys, in one run:
what each costs the server, and how long each takes.

    flock /tmp/cuo-bench.lock .venv/bin/python benchmarks/bench_triage.py [--rounds 3]

Starts its own redis-server (allkeys-lfu, so --hotkeys and triage's OBJECT FREQ work; no
maxmemory, so nothing is evicted), fills it with DEBUG POPULATE: 500,000 `user:N` (64-byte
values) and 500,000 `video:N` (512-byte values). Then, alternating each round so drift in
machine load hits every side:

  closeup-ops triage --no-aws --json        (default: 1,000 keys sampled, 2 s between INFOs)
  closeup-ops triage --no-aws --json --interval 0.5
  closeup-ops triage --no-aws --json --interval 0.5 --full   (every key, for scale)
  redis-cli --bigkeys
  redis-cli --hotkeys

Server cost of each run, read on the server before and after (from a separate connection):
the time spent in commands (INFO commandstats: the sum of usec over every command) and the
server process's CPU (INFO cpu: used_cpu_sys + used_cpu_user, which also counts the
server's own housekeeping while the run lasts). Target: triage costs the server less CPU
than `redis-cli --bigkeys`. Answers are checked: triage samples at least 900 keys of both
namespaces and exits 0; --bigkeys names the biggest string; --hotkeys lists hot keys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import VENV_BIN, clean_env  # noqa: E402

from closeup_ops.local.servers import start_redis  # noqa: E402

USERS = VIDEOS = 500_000
TOOL = str(VENV_BIN / "closeup-ops")


def fill(port: int) -> None:
    import redis

    r = redis.Redis(port=port)
    r.execute_command("DEBUG", "POPULATE", USERS, "user", 64)
    r.execute_command("DEBUG", "POPULATE", VIDEOS, "video", 512)
    assert r.dbsize() == USERS + VIDEOS
    r.close()


def server_cost(r) -> tuple[int, float]:
    """(usec in commands so far, server CPU seconds so far)."""
    stats = r.info("commandstats")
    usec = sum(int(v["usec"]) for v in stats.values() if isinstance(v, dict))
    cpu = r.info("cpu")
    return usec, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def check(name: str, proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout.decode(errors="replace")
    if name.startswith("triage"):
        assert proc.returncode == 0, proc.stderr.decode()
        doc = json.loads(out)
        want = USERS + VIDEOS if name == "triage-full" else 900
        assert doc["keys"]["sampled"] >= want, doc["keys"]["sampled"]
        names = {n["namespace"] for n in doc["keys"]["namespaces"]}
        assert {"user:", "video:"} <= names, names
    elif name == "bigkeys":
        assert proc.returncode == 0 and "Biggest string found" in out, out[-500:]
    else:
        assert proc.returncode == 0 and "hot key found" in out, out[-500:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    server = start_redis(
        work / "server", "--enable-debug-command", "yes", "--maxmemory-policy", "allkeys-lfu"
    )
    try:
        import redis

        fill(server.port)
        env = clean_env()
        env.update(REDIS_HOST=server.host, REDIS_PORT=str(server.port))
        cli = ["redis-cli", "-h", server.host, "-p", str(server.port)]
        commands = {
            "triage": [TOOL, "triage", "--no-aws", "--json"],
            "triage-0.5": [TOOL, "triage", "--no-aws", "--json", "--interval", "0.5"],
            "triage-full": [TOOL, "triage", "--no-aws", "--json", "--interval", "0.5", "--full"],
            "bigkeys": cli + ["--bigkeys"],
            "hotkeys": cli + ["--hotkeys"],
        }
        watch = redis.Redis(port=server.port)
        results: dict[str, dict[str, list[float]]] = {
            n: {"wall": [], "usec": [], "cpu": []} for n in commands
        }
        for rnd in range(args.rounds):
            for name, cmd in commands.items():
                usec0, cpu0 = server_cost(watch)
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, env=env)
                wall = time.perf_counter() - start
                usec1, cpu1 = server_cost(watch)
                check(name, proc)
                results[name]["wall"].append(wall)
                results[name]["usec"].append(usec1 - usec0)
                results[name]["cpu"].append(cpu1 - cpu0)
                print(
                    f"round {rnd + 1} {name:<11} wall {wall:7.3f} s  commands "
                    f"{(usec1 - usec0) / 1000:9.1f} ms  server cpu {cpu1 - cpu0:7.3f} s",
                    flush=True,
                )
        watch.close()
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        print(f"\nmedians of {args.rounds} rounds over {USERS + VIDEOS:,} keys")
        for name, m in med.items():
            print(
                f"  {name:<11} wall {m['wall']:7.3f} s  commands {m['usec'] / 1000:9.1f} ms  "
                f"server cpu {m['cpu']:7.3f} s"
            )
        big = med["bigkeys"]
        for name in ("triage", "triage-0.5", "triage-full"):
            m = med[name]
            print(
                f"  {name} / bigkeys: commands {m['usec'] / big['usec']:.4f}x, server cpu "
                f"{m['cpu'] / big['cpu']:.3f}x, wall {m['wall'] / big['wall']:.3f}x "
                f"(hotkeys wall {med['hotkeys']['wall']:.3f} s)"
            )
        ok = med["triage"]["cpu"] < big["cpu"] and med["triage"]["usec"] < big["usec"]
        print("target (triage costs the server less than --bigkeys):", "met" if ok else "MISSED")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
