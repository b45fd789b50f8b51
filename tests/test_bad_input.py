"""Bad input through the CLI, case by case: the exit code from SPEC, one line on stderr, no
traceback, and the password never shown."""

from __future__ import annotations

import socket

import pytest
from helpers.common import PASSWORD
from helpers.common import silent_listener as listen_silently

SECRET = "Leak-Me-Not-7731"  # the password every case runs with, checked in every output


@pytest.fixture(scope="module")
def silent_listener():
    """Accepts connections and never answers."""
    with listen_silently() as port:
        yield port


@pytest.fixture(scope="module")
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases(plain, pw, tls, tls_files, cluster, closed, silent):
    def at(server, **env):
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(server.port), **env}

    p = at(plain)
    return [
        # settings, from the environment
        ("port not a number", [], {**p, "REDIS_PORT": "abc"}, 2, "REDIS_PORT"),
        ("port too big", [], {**p, "REDIS_PORT": "70000"}, 2, "REDIS_PORT"),
        ("port zero", [], {**p, "REDIS_PORT": "0"}, 2, "REDIS_PORT"),
        ("negative timeout", [], {**p, "REDIS_TIMEOUT": "-1"}, 2, "REDIS_TIMEOUT"),
        ("timeout not a number", [], {**p, "REDIS_TIMEOUT": "soon"}, 2, "REDIS_TIMEOUT"),
        ("unknown boolean tls", [], {**p, "REDIS_TLS": "maybe"}, 2, "REDIS_TLS"),
        ("unknown boolean cluster", [], {**p, "REDIS_CLUSTER": "sometimes"}, 2, "REDIS_CLUSTER"),
        ("unknown boolean iam", [], {**p, "REDIS_IAM_AUTH": "perhaps"}, 2, "REDIS_IAM_AUTH"),
        ("negative db", [], {**p, "REDIS_DB": "-1"}, 2, "REDIS_DB"),
        ("db not a number", [], {**p, "REDIS_DB": "one"}, 2, "REDIS_DB"),
        (
            "unreadable CA file",
            [],
            {**p, "REDIS_CA_CERT": "/nonexistent/ca.pem"},
            2,
            "REDIS_CA_CERT",
        ),
        ("bastion port", [], {**p, "BASTION_PORT": "99999"}, 2, "BASTION_PORT"),
        ("host with spaces", [], {**p, "REDIS_HOST": "my host"}, 2, "REDIS_HOST"),
        ("host and port", [], {**p, "REDIS_HOST": "127.0.0.1:6380"}, 2, "REDIS_PORT (6380)"),
        (
            "host as a URL with the password",
            [],
            {**p, "REDIS_HOST": f"rediss://app:{SECRET}@127.0.0.1:6379"},
            2,
            "REDIS_HOST holds a URL",
        ),
        ("host as user@host", [], {**p, "REDIS_HOST": "app@127.0.0.1"}, 2, "REDIS_USERNAME"),
        ("iam without user", [], {**p, "REDIS_IAM_AUTH": "true"}, 2, "REDIS_USERNAME"),
        (
            "serverless without tls",
            [],
            {"REDIS_HOST": "demo-du95w6.serverless.aps1.cache.amazonaws.com", "REDIS_TLS": "false"},
            2,
            "serverless",
        ),
        # settings, from flags and files
        ("port flag not a number", ["--port", "abc"], p, 2, "--port"),
        ("timeout flag zero", ["--timeout", "0"], p, 2, "--timeout"),
        ("env file missing", ["--env-file", "/nonexistent/.env"], p, 2, "env file"),
        (
            "malformed .env line",
            [],
            {**p, "_DOTENV": "REDIS_HOST=127.0.0.1\nthis is not ok\n"},
            2,
            "line 2",
        ),
        ("unclosed quote in .env", [], {**p, "_DOTENV": 'REDIS_PORT="6380\n'}, 2, "quote"),
        ("bad port in .env", [], {"_DOTENV": "REDIS_PORT=port\n"}, 2, "REDIS_PORT"),
        ("unknown option", ["--bogus"], p, 2, "--bogus"),
        ("bad count", ["--count", "0"], p, 2, "--count"),
        ("count not a number", ["--count", "x"], p, 2, "count"),
        ("ask password without a terminal", ["--ask-password"], p, 2, "terminal"),
        # connecting
        ("unknown host", [], {**p, "REDIS_HOST": "no-such-cache.invalid"}, 3, "resolve"),
        ("closed port", [], {**p, "REDIS_PORT": str(closed)}, 3, "refused"),
        (
            "listener never answers",
            [],
            {**p, "REDIS_PORT": str(silent), "REDIS_TIMEOUT": "1"},
            3,
            "timed out after 1 s",
        ),
        ("tls client to plain server", ["--tls"], p, 3, "does not speak TLS"),
        ("plain client to tls server", ["--no-tls"], at(tls), 3, "expects TLS"),
        ("untrusted CA", ["--tls"], at(tls), 3, "REDIS_CA_CERT"),
        (
            "wrong CA file",
            [],
            at(tls, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.cert)),
            3,
            "certificate",
        ),
        # authentication
        ("wrong password", [], at(pw, REDIS_PASSWORD=SECRET), 4, "WRONGPASS"),
        ("missing password", [], {**at(pw), "_NO_PASSWORD": "1"}, 4, "NOAUTH"),
        (
            "password to a server without one",
            [],
            {**p, "REDIS_USERNAME": "nobody"},
            4,
            "authentication",
        ),
        # cluster
        ("db on a cluster", [], at(cluster.entry, REDIS_DB="3"), 2, "cluster mode"),
        ("db flag on a cluster", ["--db", "3"], at(cluster.entry), 2, "REDIS_DB"),
        ("unknown command", None, p, 2, "No such command"),
    ]


def test_bad_inputs(
    cli,
    tmp_path,
    redis_plain,
    redis_password,
    redis_tls,
    tls_files,
    redis_cluster,
    closed_port,
    silent_listener,
):
    cases = _cases(
        redis_plain,
        redis_password,
        redis_tls,
        tls_files,
        redis_cluster,
        closed_port,
        silent_listener,
    )
    assert len(cases) >= 25
    failures = []
    for name, args, env, code, needle in cases:
        env = dict(env)
        dotenv = env.pop("_DOTENV", None)
        if dotenv is not None:
            (tmp_path / ".env").write_text(dotenv)
        if not env.pop("_NO_PASSWORD", None):
            env.setdefault("REDIS_PASSWORD", SECRET)
        argv = ["pingg"] if args is None else ["ping", *args]
        result = cli(*argv, env=env)
        (tmp_path / ".env").unlink(missing_ok=True)
        problems = []
        if result.code != code:
            problems.append(f"exit {result.code} != {code}")
        if len(result.err_lines) != 1:
            problems.append(f"{len(result.err_lines)} stderr lines")
        if "Traceback" in result.err + result.out:
            problems.append("traceback")
        if SECRET in result.err + result.out or PASSWORD in result.err + result.out:
            problems.append("password shown")
        if needle.lower() not in result.err.lower():
            problems.append(f"{needle!r} not in stderr")
        if result.out.strip():
            problems.append("stdout not empty")
        if problems:
            failures.append(f"{name}: {', '.join(problems)}: {result.err.strip()!r}")
    assert not failures, "\n".join(failures)
