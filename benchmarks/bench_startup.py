"""Start-up: `closeup-ops --help` and `closeup-ops ping` vs a bare redis-py ping, same venv.

Targets (issue 2): --help median <= 150 ms; ping <= 1.3x the bare redis-py ping.
Also checks that neither path imports boto3, botocore, paramiko or sshtunnel.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, VENV_BIN, clean_env, interleaved, median_ms

from closeup_ops.local.servers import start_redis

PACKAGE = ROOT / "closeup_ops"
HEAVY = ("boto3", "botocore", "paramiko", "sshtunnel", "moto")


def heavy_imports(args: list[str], env: dict[str, str]) -> set[str]:
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-X", "importtime", "-m", "closeup_ops", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    names = set(re.findall(r"\|\s+([\w.]+)$", out.stderr, re.M))
    return {n.split(".")[0] for n in names if n.split(".")[0] in HEAVY}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    # pip compiles an installed package's bytecode at install time; an editable install
    # does not, and with PYTHONDONTWRITEBYTECODE set (as in some shells) every run would
    # recompile closeup_ops from source while redis and typer load their .pyc files.
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(PACKAGE)],
        check=True,
        env=clean_env(PYTHONDONTWRITEBYTECODE=""),
    )
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp) / "redis")
        try:
            env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(server.port))
            tool = str(VENV_BIN / "closeup-ops")
            check = subprocess.run([tool, "ping"], capture_output=True, text=True, env=env)
            assert check.returncode == 0 and check.stdout.startswith("PONG"), check.stderr
            times = interleaved(
                {
                    "closeup-ops --help": [tool, "--help"],
                    "closeup-ops ping": [tool, "ping"],
                    "bare redis-py ping": [
                        str(VENV_BIN / "python"),
                        "-c",
                        f"import redis; redis.Redis(port={server.port}).ping()",
                    ],
                },
                rounds=args.rounds,
                env=env,
            )
            heavy = heavy_imports(["--help"], env) | heavy_imports(["ping"], env)
        finally:
            server.stop()
    help_ms = median_ms(times["closeup-ops --help"])
    ping_ms = median_ms(times["closeup-ops ping"])
    bare_ms = median_ms(times["bare redis-py ping"])
    ratio = ping_ms / bare_ms
    print(f"rounds: {args.rounds} (interleaved), python {sys.version.split()[0]}")
    print(
        f"closeup-ops --help      median {help_ms:7.1f} ms   target <= 150 ms   "
        f"{'PASS' if help_ms <= 150 else 'FAIL'}"
    )
    print(f"closeup-ops ping        median {ping_ms:7.1f} ms")
    print(f"bare redis-py ping      median {bare_ms:7.1f} ms")
    print(
        f"ping / bare ratio       {ratio:.2f}x       target <= 1.30x   "
        f"{'PASS' if ratio <= 1.3 else 'FAIL'}"
    )
    print(f"heavy imports on --help/ping: {sorted(heavy) or 'none'}")
    return 0 if help_ms <= 150 and ratio <= 1.3 and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
