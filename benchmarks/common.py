"""Helpers shared by the benchmarks: timing whole commands, medians, a throwaway server."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
WORK = ROOT / "benchmarks" / ".work"

sys.path.insert(0, str(ROOT))


def run_timed(
    cmd: list[str], env: dict[str, str] | None = None, stdout=subprocess.DEVNULL
) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - start, proc


def interleaved(
    commands: dict[str, list[str]], rounds: int, env: dict[str, str] | None = None, check=None
) -> dict[str, list[float]]:
    """Run each command once per round, alternating, so drift in machine load hits all."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            elapsed, proc = run_timed(cmd, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.decode()}")
            times[name].append(elapsed)
    return times


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def clean_env(**more: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "BASTION_", "ELASTICACHE_"))
    }
    env.update(more)
    return env
