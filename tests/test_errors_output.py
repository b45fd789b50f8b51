"""The one error handler and the one output layer."""

from __future__ import annotations

import io
import json

import pytest
from helpers.common import server_env

from closeup_ops import errors, output
from closeup_ops.settings import Secret


def _boom(*args, **kwargs):
    raise ValueError("something unexpected")


def test_internal_error_is_one_line_exit_1(cli, redis_plain, monkeypatch):
    import closeup_ops.ops.ping as ping_ops

    monkeypatch.setattr(ping_ops, "ping", _boom)
    r = cli("ping", env=server_env(redis_plain))
    assert r.code == 1
    assert len(r.err_lines) == 1 and "Traceback" not in r.err
    assert "internal error" in r.err and "--verbose" in r.err


def test_verbose_shows_the_traceback(cli, redis_plain, monkeypatch):
    import closeup_ops.ops.ping as ping_ops

    monkeypatch.setattr(ping_ops, "ping", _boom)
    r = cli("ping", "--verbose", env=server_env(redis_plain))
    assert r.code == 1
    assert "Traceback" in r.err and r.err_lines[-1].startswith("closeup-ops: error:")


def test_ctrl_c_is_130(cli, redis_plain, monkeypatch):
    import closeup_ops.ops.ping as ping_ops

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ping_ops, "ping", interrupted)
    r = cli("ping", env=server_env(redis_plain))
    assert r.code == 130 and len(r.err_lines) == 1


def test_messages_are_scrubbed_of_secrets():
    Secret("very-secret-token-123")
    line = errors.scrub("AUTH very-secret-token-123 failed")
    assert "very-secret-token-123" not in line and "******" in line


def test_json_mode_writes_only_json(cli, redis_plain):
    r = cli("ping", "--json", "--count", "2", env=server_env(redis_plain))
    json.loads(r.out)  # the whole of stdout is one document
    assert r.err == ""


def test_jsonable_masks_secrets_and_bytes():
    doc = output.jsonable({"password": Secret("abc-123-xyz"), "key": b"otp:\xff", "n": 1.5})
    assert doc == {"password": "******", "key": "otp:\\xff", "n": 1.5}


def test_plain_table_when_not_a_terminal(capsys):
    output.table(["name", "count"], [["otp", 5], ["video", 12]], right=("count",))
    out = capsys.readouterr().out
    assert out.splitlines() == ["name   count", "otp        5", "video     12"]
    assert "\x1b[" not in out and "│" not in out


def test_rich_table_on_a_terminal_honours_no_color(monkeypatch):
    from rich.console import Console

    buf = io.StringIO()
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(output, "fancy", lambda: True)
    import rich.console

    monkeypatch.setattr(
        rich.console, "Console", lambda **k: Console(file=buf, force_terminal=True, width=80, **k)
    )
    output.table(["name"], [["otp"]])
    text = buf.getvalue()
    assert "otp" in text and ("┃" in text or "│" in text)
    assert "\x1b[3" not in text  # no colour codes


@pytest.mark.parametrize(
    "code_name,code",
    [
        ("EXIT_USAGE", 2),
        ("EXIT_CONNECT", 3),
        ("EXIT_AUTH", 4),
        ("EXIT_AWS", 5),
        ("EXIT_CHECK", 6),
        ("EXIT_INTERRUPTED", 130),
    ],
)
def test_exit_codes_match_spec(code_name, code):
    assert getattr(errors, code_name) == code
