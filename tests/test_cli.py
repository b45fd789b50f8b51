"""The app itself: --help lists every command with a summary, --version, python -m."""

from __future__ import annotations

import subprocess
import sys

import pytest

from closeup_ops import __version__
from closeup_ops.cli import COMMANDS

SPEC_COMMANDS = {
    "ping",
    "tunnel",
    "keys",
    "ttl",
    "snapshot",
    "sg",
    "failover-test",
    "caches",
    "doctor",
    "stats",
    "events",
    "triage",
    "cost",
    "sandbox",
}


def test_help_lists_every_command(cli):
    r = cli("--help")
    assert r.code == 0
    assert SPEC_COMMANDS <= set(COMMANDS)
    for name in COMMANDS:
        assert f"  {name} " in r.out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help_and_json(cli, name):
    r = cli(name, "--help")
    assert r.code == 0, r.err
    if name not in ("snapshot", "sg", "sandbox"):  # groups: their subcommands take --json
        assert "--json" in r.out


def test_no_arguments_shows_help(cli):
    r = cli()
    assert r.code == 0 and "Commands:" in r.out


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.strip() == f"closeup-ops {__version__}"


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "closeup_ops", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and __version__ in out.stdout


def test_cli_import_stays_light():
    """--help and ping must not pay for boto3, botocore, paramiko or sshtunnel."""
    code = (
        "import sys, closeup_ops.cli; "
        "print(sorted(m for m in ('boto3','botocore','paramiko','sshtunnel','moto','redis') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
