"""`keys` and `keys --summary` against redis-cli over 1,000,000 keys, in one run; with
--cluster, shards at once over a 6-primary cluster (see cluster_main).

    .venv/bin/python benchmarks/bench_keyspace.py [--rounds 3]
    flock /tmp/cuo-bench.lock .venv/bin/python benchmarks/bench_keyspace.py --cluster

Starts its own redis-server (debug command on), fills it with DEBUG POPULATE: 500,000
`otp:N` (the even N, 250,000 keys, get a TTL) and 500,000 `video:N`. Then, alternating
each round so drift in machine load hits both sides:

  keys 'otp:*' --json            vs  redis-cli --scan --pattern 'otp:*'   target <= 0.25x
  keys 'otp:*' --ttl --json      vs  redis-cli --scan --pattern 'otp:*'   target <= 0.5x
  keys --summary --json          vs  redis-cli --memkeys                  target <= 0.3x

Every run's answer is checked (500,000 keys; 250,000 with a TTL; the summary's counts),
so a fast wrong answer fails. The peak RSS of `keys --json` over the 1M-key server (all
keys, not just otp:*) is measured with GNU time and must stay <= 100 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import VENV_BIN, clean_env  # noqa: E402

from closeup_ops.local.servers import start_redis  # noqa: E402

OTP = 500_000
VIDEO = 500_000
WITH_TTL = 250_000
TOOL = str(VENV_BIN / "closeup-ops")


def fill(port: int) -> None:
    import redis

    r = redis.Redis(port=port)
    r.execute_command("DEBUG", "POPULATE", OTP, "otp")
    r.execute_command("DEBUG", "POPULATE", VIDEO, "video")
    # TTL on the even otp ids, 50k per script call so the server never blocks for long.
    lua = "for i=ARGV[1],ARGV[2],2 do redis.call('EXPIRE','otp:'..i, 3600) end return 1"
    for lo in range(0, OTP, 50_000):
        r.eval(lua, 0, lo, lo + 49_998)
    ks = r.info("keyspace")["db0"]
    assert ks["keys"] == OTP + VIDEO and ks["expires"] == WITH_TTL, ks
    r.close()


def timed(cmd: list[str], out_path: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run, stdout to a file."""
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def peak_rss_kib(cmd: list[str], out_path: Path, env: dict[str, str], work: Path) -> int:
    """Peak RSS of cmd alone, measured by GNU time (a fork of this process would count
    this process's own memory in the child's maxrss)."""
    report = work / "rss"
    timed(["/usr/bin/time", "-f", "%M", "-o", str(report)] + cmd, out_path, env)
    return int(report.read_text().split()[-1])


def check_scan(path: Path) -> None:
    n = sum(1 for _ in open(path, "rb"))
    assert n == OTP, f"{path.name}: {n} lines, expected {OTP}"


def check_ndjson(path: Path, want_ttl: bool) -> None:
    n = with_ttl = 0
    keys = set()
    with open(path, "rb") as fh:
        for line in fh:
            doc = json.loads(line)
            keys.add(doc["key"])
            n += 1
            if want_ttl and doc["ttl_ms"] >= 0:
                with_ttl += 1
    assert n == OTP and len(keys) == OTP, f"{path.name}: {n} lines, {len(keys)} distinct"
    assert all(k.startswith("otp:") for k in keys)
    if want_ttl:
        assert with_ttl == WITH_TTL, f"{with_ttl} keys with a TTL, expected {WITH_TTL}"


def check_summary(path: Path) -> None:
    doc = json.loads(path.read_text())
    ns = {n["namespace"]: n for n in doc["namespaces"]}
    assert doc["keys"] == OTP + VIDEO, doc["keys"]
    assert ns["otp"]["keys"] == OTP and ns["otp"]["with_ttl"] == WITH_TTL, ns["otp"]
    assert ns["video"]["keys"] == VIDEO and ns["video"]["with_ttl"] == 0, ns["video"]
    assert ns["otp"]["total_bytes"] > 0 and len(ns["otp"]["biggest"]) == 3


def check_memkeys(path: Path) -> None:
    text = path.read_text()
    assert f"Sampled {OTP + VIDEO} keys" in text, text[-400:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cluster", action="store_true", help="the 6-primary cluster run")
    parser.add_argument("--per-node", type=int, default=1_000_000, help="keys per primary")
    parser.add_argument("--rate", type=int, default=5000, help="--rate N for the accuracy run")
    args = parser.parse_args()
    if args.cluster:
        from bench_keyspace_cluster import cluster_main

        return cluster_main(args)
    for tool in ("redis-cli", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found")
    work = Path(tempfile.mkdtemp(prefix="bench-keyspace-"))
    server = start_redis(work / "server", "--enable-debug-command", "yes")
    try:
        fill(server.port)
        port = str(server.port)
        env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=port, NO_COLOR="1")
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", port]
        pairs = {
            "keys 'otp:*' --json": (
                [TOOL, "keys", "otp:*", "--json"],
                lambda p: check_ndjson(p, False),
            ),
            "redis-cli --scan --pattern 'otp:*'": (
                cli + ["--scan", "--pattern", "otp:*"],
                check_scan,
            ),
            "keys 'otp:*' --ttl --json": (
                [TOOL, "keys", "otp:*", "--ttl", "--json"],
                lambda p: check_ndjson(p, True),
            ),
            "keys --summary --json": ([TOOL, "keys", "--summary", "--json"], check_summary),
            "redis-cli --memkeys": (cli + ["--memkeys"], check_memkeys),
        }
        times: dict[str, list[float]] = {name: [] for name in pairs}
        for rnd in range(args.rounds):
            for i, (name, (cmd, check)) in enumerate(pairs.items()):
                out = work / f"out{i}"
                elapsed = timed(cmd, out, env)
                check(out)
                times[name].append(elapsed)
                print(f"round {rnd + 1}: {name}: {elapsed:.2f} s", flush=True)
        # Peak RSS while streaming every one of the 1M keys as NDJSON.
        all_rss = peak_rss_kib([TOOL, "keys", "--json"], work / "all", env, work)
        lines = sum(1 for _ in open(work / "all", "rb"))
        assert lines == OTP + VIDEO, lines
        med = {name: statistics.median(v) for name, v in times.items()}
        scan_name = "redis-cli --scan --pattern 'otp:*'"
        results = [
            ("keys 'otp:*' --json", scan_name, 0.25),
            ("keys 'otp:*' --ttl --json", scan_name, 0.5),
            ("keys --summary --json", "redis-cli --memkeys", 0.3),
        ]
        print()
        print(
            f"medians of {args.rounds} rounds (s): "
            + ", ".join(f"{k}: {v:.2f}" for k, v in med.items())
        )
        ok = True
        for name, anchor_name, target in results:
            anchor = med[anchor_name]
            ratio = med[name] / anchor
            ok &= ratio <= target
            # Each round's own ratio too: both sides of a round saw the same machine load.
            paired = [a / b for a, b in zip(times[name], times[anchor_name], strict=True)]
            print(
                f"{name}: {med[name]:.2f} s = {ratio:.3f}x of the anchor ({anchor:.2f} s); "
                f"target <= {target}x: {'PASS' if ratio <= target else 'FAIL'}; "
                f"per round: {' '.join(f'{r:.2f}' for r in paired)} "
                f"(median {statistics.median(paired):.3f})"
            )
        peak_mib = all_rss / 1024
        ok &= peak_mib <= 100
        print(
            f"keys --json over all {lines} keys: peak RSS {peak_mib:.1f} MiB; "
            f"target <= 100 MiB: {'PASS' if peak_mib <= 100 else 'FAIL'}"
        )
        print(f"load average at the end: {os.getloadavg()}")
        return 0 if ok else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
