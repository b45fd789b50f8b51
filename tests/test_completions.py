"""Shell completions: generated from the CLI, no drift, and they work in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(sys.executable).parent / "closeup-ops"


def _env(**more: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{TOOL.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(more)
    return env


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_do_not_drift(shell):
    fresh = subprocess.run(
        [str(TOOL)],
        env=_env(_CLOSEUP_OPS_COMPLETE=f"source_{shell}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (ROOT / "completions" / f"closeup-ops.{shell}").read_text()
    assert fresh == committed, "run scripts/completions and commit the result"


def _bash_complete(words: list[str]) -> list[str]:
    script = ROOT / "completions" / "closeup-ops.bash"
    line = " ".join(words)
    program = f"""
source {script}
COMP_WORDS=({line})
COMP_CWORD={len(words) - 1}
_closeup_ops_completion closeup-ops
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_subcommand():
    assert _bash_complete(["closeup-ops", "sn"]) == ["snapshot"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_offers_keys_options():
    offered = _bash_complete(["closeup-ops", "keys", "--"])
    for option in ("--limit", "--type", "--ttl", "--summary", "--json", "--host"):
        assert option in offered
