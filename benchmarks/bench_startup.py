"""Start-up: `closeup-ops --help` and `closeup-ops ping` vs a bare redis-py ping, same venv.

Targets (issue 2): --help median <= 150 ms; ping <= 1.3x the bare redis-py ping.
Also checks that neither path imports boto3, botocore, paramiko or sshtunnel.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 30] [--baseline REV]

--baseline REV also times `python -m closeup_ops` from git revision REV (its package
extracted with `git archive`, same venv) beside this tree's, interleaved in the same run,
and compares the closeup_ops modules each imports: a re-layout must not make start-up slower.
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


def own_modules(args: list[str], env: dict[str, str]) -> int:
    """How many closeup_ops modules `python -m closeup_ops ARGS` imports."""
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-X", "importtime", "-m", "closeup_ops", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    return len(set(re.findall(r"\|\s+(closeup_ops[\w.]*)$", out.stderr, re.M)))


def extract(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "closeup_ops"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    subprocess.run([str(VENV_BIN / "python"), "-m", "compileall", "-q", str(into)], check=True)
    return into


def compare_baseline(rev: str, rounds: int, port: int) -> None:
    """`python -m closeup_ops` from REV vs this tree, interleaved round by round, same venv
    (both through `env PYTHONPATH=...`, so both pay the same extra exec)."""
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(rev, Path(tmp))
        py = str(VENV_BIN / "python")
        env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port))
        paths = {"this tree": str(ROOT), rev[:12]: str(old)}
        cmds = {
            f"{label} {what}": ["env", f"PYTHONPATH={path}", py, "-m", "closeup_ops", what]
            for label, path in paths.items()
            for what in ("--help", "ping")
        }
        times = interleaved(cmds, rounds=rounds, env=env)
        for name, cmd in cmds.items():
            label = name.rsplit(" ", 1)[0]
            mods = own_modules([cmd[-1]], {**env, "PYTHONPATH": paths[label]})
            print(
                f"python -m closeup_ops {name:24} median {median_ms(times[name]):6.1f} ms   "
                f"closeup_ops modules imported: {mods}"
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline", help="also time this git revision's package, same run")
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
            if args.baseline:
                compare_baseline(args.baseline, args.rounds, server.port)
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
