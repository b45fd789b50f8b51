"""How closely does `failover-test` measure an outage? Against the by-hand anchor, on the
same injected outage in the same run.

Each round: a primary and a replica (own servers), a TCP proxy as the endpoint. The installed
`closeup-ops failover-test --json` and the anchor — a shell loop of `redis-cli SET` every
50 ms with `date` stamps, what one would write following the guide's "stop Redis, verify the
app continues" — both run against the proxy. The script kills the primary, waits, promotes
the replica and switches the proxy; injected downtime = switch time - kill time. Each
side's downtime (first failed write -> first good write after it) is compared with it.

    .venv/bin/python benchmarks/bench_failover.py --rounds 5 --outage 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, VENV_BIN, clean_env

sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402
from helpers.tcpproxy import TcpProxy  # noqa: E402

from closeup_ops.local.servers import start_redis  # noqa: E402

ANCHOR = r"""
i=0
while :; do
  i=$((i+1)); t=$(date +%s.%N)
  if redis-cli -h 127.0.0.1 -p "$PORT" SET "bench:anchor:$i" "$i" EX 600 2>/dev/null | grep -q OK
  then echo "$t ok"; else echo "$t fail"; fi
  sleep 0.05
done
"""


def wait_for(check, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def anchor_downtime(lines: list[str]) -> float | None:
    first_fail = None
    for line in lines:
        stamp, _, result = line.partition(" ")
        if result == "fail" and first_fail is None:
            first_fail = float(stamp)
        elif result == "ok" and first_fail is not None:
            return float(stamp) - first_fail
    return None


def one_round(work: Path, outage: float) -> dict:
    primary = start_redis(work / "primary", "--repl-diskless-sync-delay", "0")
    replica = start_redis(work / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    proxy = TcpProxy(("127.0.0.1", primary.port)).start()
    anchor = tool = None
    try:
        p, r = redis.Redis(port=primary.port), redis.Redis(port=replica.port)
        wait_for(lambda: r.info("replication")["master_link_status"] == "up", "replica sync")
        # "up" comes before the primary streams to the replica (it waits for the replica's
        # first ACK): writes made in between are lost when the primary dies, truly.
        p.set("bench:sentinel", "1")
        wait_for(lambda: r.get("bench:sentinel") == b"1", "replication streaming")
        env = clean_env(
            REDIS_HOST="127.0.0.1",
            REDIS_PORT=str(proxy.port),
            PORT=str(proxy.port),
            XDG_STATE_HOME=str(work / "state"),
        )
        anchor = subprocess.Popen(
            ["bash", "-c", ANCHOR],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        tool = subprocess.Popen(
            [
                str(VENV_BIN / "closeup-ops"),
                "failover-test",
                "--json",
                "--duration",
                str(outage + 3),
                "--recovery-timeout",
                "20",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        wait_for(lambda: len(list(p.scan_iter("closeup-ops:failover:*"))) >= 10, "probe")
        wait_for(lambda: len(list(p.scan_iter("bench:anchor:*"))) >= 5, "anchor")
        t0_wall, t0 = time.time(), time.monotonic()
        primary.kill()
        time.sleep(outage)
        r.replicaof("NO", "ONE")
        proxy.set_upstream(("127.0.0.1", replica.port))
        injected = time.monotonic() - t0
        out, _ = tool.communicate(timeout=60)
        time.sleep(0.3)
        os.killpg(anchor.pid, signal.SIGTERM)
        lines = [x for x in anchor.communicate(timeout=10)[0].splitlines() if x.strip()]
        doc = json.loads(out)
        s = doc["summary"]
        measured_anchor = anchor_downtime([x for x in lines if float(x.split()[0]) > t0_wall - 1])
        return {
            "injected": injected,
            "tool": s["downtime_s"],
            "anchor": measured_anchor,
            "tool_attempts_per_s": s["attempted"] / doc["duration_s"],
            "anchor_attempts_per_s": len(lines)
            / max(1e-9, float(lines[-1].split()[0]) - float(lines[0].split()[0])),
            "tool_lost": s["lost"],
        }
    finally:
        for proc in (tool, anchor):
            if proc is not None and proc.poll() is None:
                proc.kill()
        proxy.stop()
        replica.stop()
        primary.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--outage", type=float, default=1.0)
    args = parser.parse_args()
    if not shutil.which("redis-cli"):
        raise SystemExit("redis-cli is needed for the anchor")
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
            row = one_round(Path(tmp), args.outage)
        rows.append(row)
        anchor = "-" if row["anchor"] is None else f"{row['anchor'] * 1000:.0f}"
        print(
            f"round {i + 1}: injected {row['injected'] * 1000:.0f} ms, "
            f"tool {row['tool'] * 1000:.0f} ms, anchor {anchor} ms",
            flush=True,
        )
    tool_err = [abs(r["tool"] - r["injected"]) * 1000 for r in rows]
    anchor_err = [abs(r["anchor"] - r["injected"]) * 1000 for r in rows if r["anchor"] is not None]
    assert all(r["tool"] > 0 for r in rows), "the tool saw no outage"
    print(
        f"median |tool - injected|   {statistics.median(tool_err):7.1f} ms "
        f"(max {max(tool_err):.1f})"
    )
    if anchor_err:
        print(
            f"median |anchor - injected| {statistics.median(anchor_err):7.1f} ms "
            f"(max {max(anchor_err):.1f})"
        )
        ratio = statistics.median(anchor_err) / max(0.1, statistics.median(tool_err))
        print(f"anchor error / tool error  {ratio:7.1f}x")
    print(
        f"probe rate: tool {statistics.median(r['tool_attempts_per_s'] for r in rows):.1f}/s, "
        f"anchor {statistics.median(r['anchor_attempts_per_s'] for r in rows):.1f}/s"
    )
    print(f"tool lost writes per round: {[r['tool_lost'] for r in rows]}")


if __name__ == "__main__":
    main()
