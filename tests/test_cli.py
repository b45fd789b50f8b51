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


def test_a_reader_that_goes_away_ends_the_run_quietly(redis_plain):
    """`closeup-ops stats --watch | head -1`: once head has its line, the next write meets a
    widowed pipe; the run ends with exit 0 and nothing on stderr, as Unix tools do (click
    alone would exit 1)."""
    from helpers.common import server_env

    env = {**__import__("os").environ, **server_env(redis_plain)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "closeup_ops", "stats", "--watch", "--interval", "0.05", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("{")
        proc.stdout.close()  # the reader goes away
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == ""


def test_a_broken_pipe_to_the_cache_is_one_line_not_silence(cli, redis_plain, monkeypatch):
    """EPIPE on a socket (the peer went away), with our stdout fine: an error line and exit
    3, not click's silent exit 1."""
    import errno

    from helpers.common import server_env

    from closeup_ops.ops import ping as ping_ops

    def broken(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(ping_ops, "ping", broken)
    r = cli("ping", env=server_env(redis_plain))
    assert r.code == 3, (r.code, r.err)
    assert len(r.err_lines) == 1 and "Broken pipe" in r.err
