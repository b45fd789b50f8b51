"""A local file that cannot be used is bad input (exit 2, naming the file), not a cache that
cannot be reached (exit 3), whatever cache the command was talking to (SPEC: Exit codes)."""

from __future__ import annotations

import errno
import socket

from helpers.common import server_env

from closeup_ops.errors import classify
from closeup_ops.local.servers import start_redis


def test_a_file_error_names_the_file_and_is_exit_2():
    exc = PermissionError(errno.EACCES, "Permission denied", "/srv/reports/triage.md")
    err = classify(exc, "cache.example:6379")
    assert err.exit_code == 2
    assert "/srv/reports/triage.md" in err.line() and "Permission denied" in err.line()
    assert "cannot reach" not in err.line()


def test_a_socket_error_is_still_exit_3():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connect is refused
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError as exc:
            err = classify(exc, f"127.0.0.1:{port}")
    assert err.exit_code == 3 and "cannot reach 127.0.0.1:" in err.line()


def test_triage_shows_the_report_then_refuses_a_file_it_cannot_write(cli, tmp_path):
    server = start_redis(tmp_path / "server")
    target = tmp_path / "report.md"
    target.symlink_to(tmp_path / "no-such-dir" / "report.md")  # open() fails: ENOENT
    r = cli("triage", "--no-aws", "--interval", "0.5", "--markdown", str(target),
            env=server_env(server))  # fmt: skip
    server.stop()
    assert r.code == 2, r.err
    assert r.out.startswith("# Triage of ")  # the report was shown first
    lines = [line for line in r.err.splitlines() if line.startswith("closeup-ops: error:")]
    assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in r.err
