"""The settings flags every command shares, added to a command's signature by one decorator.

    @app.command()
    @with_settings(REDIS)
    def ping(settings: Settings, count: int = 1) -> None: ...

The decorator adds the flags of the named groups (plus --env-file, --verbose, --json),
turns them into one `Settings` through `settings.load`, configures the output layer, and
calls the command with `settings=`. No flag takes a password (SPEC).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import Interrupted, UsageError
from closeup_ops.settings import load

CONN = "Connection"
BASTION = "Bastion (SSH tunnel)"
AWS_PANEL = "AWS"
OUT = "Output"


def _opt(
    name: str, kind: Any, *decls: str, help: str, panel: str, default: Any = None, **kw: Any
) -> inspect.Parameter:
    option = typer.Option(*decls, help=help, rich_help_panel=panel, show_default=False, **kw)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, option],
    )


COMMON = [
    _opt(
        "env_file",
        Optional[str],
        "--env-file",
        help="Read settings from this .env file (default: ./.env when present).",
        panel=OUT,
        metavar="PATH",
    ),
    _opt(
        "json_out",
        bool,
        "--json",
        help="One JSON document on stdout (NDJSON for streams).",
        panel=OUT,
        default=False,
    ),
    _opt(
        "verbose",
        bool,
        "--verbose",
        "-v",
        help="Show tracebacks for internal errors.",
        panel=OUT,
        default=False,
    ),
]

AWS = [
    _opt(
        "cache",
        Optional[str],
        "--cache",
        help="Cache name (ELASTICACHE_CACHE); else found from REDIS_HOST.",
        panel=AWS_PANEL,
    ),
    _opt("profile", Optional[str], "--profile", help="AWS profile (AWS_PROFILE).", panel=AWS_PANEL),
    _opt(
        "region",
        Optional[str],
        "--region",
        help="AWS region (default: the endpoint name's, else AWS_REGION).",
        panel=AWS_PANEL,
    ),
]

BASTION_OPTS = [
    _opt(
        "via_bastion",
        bool,
        "--via-bastion",
        help="Open an SSH tunnel through the bastion for this run.",
        panel=BASTION,
        default=False,
    ),
    _opt(
        "bastion_host",
        Optional[str],
        "--bastion",
        help="SSH jump host (BASTION_HOST).",
        panel=BASTION,
        metavar="HOST",
    ),
    _opt(
        "bastion_port",
        Optional[str],
        "--bastion-port",
        help="SSH port (BASTION_PORT, 22).",
        panel=BASTION,
        metavar="PORT",
    ),
    _opt(
        "bastion_user",
        Optional[str],
        "--bastion-user",
        help="SSH user (BASTION_USER, ec2-user).",
        panel=BASTION,
        metavar="USER",
    ),
    _opt(
        "bastion_key",
        Optional[str],
        "--bastion-key",
        help="SSH private key file (BASTION_KEY); else the SSH agent.",
        panel=BASTION,
        metavar="PATH",
    ),
]

REDIS = [
    _opt(
        "host",
        Optional[str],
        "--host",
        help="Endpoint or host (REDIS_HOST, localhost).",
        panel=CONN,
    ),
    # Ports and numbers arrive as text so that the loader, not click, names the problem
    # the same way for a flag and for a variable.
    _opt(
        "port",
        Optional[str],
        "--port",
        "-p",
        help="Port (REDIS_PORT, 6379).",
        panel=CONN,
        metavar="PORT",
    ),
    _opt(
        "username",
        Optional[str],
        "--username",
        "-u",
        help="ACL/RBAC user (REDIS_USERNAME).",
        panel=CONN,
    ),
    _opt(
        "ask_password",
        bool,
        "--ask-password",
        help="Prompt for the password on the terminal (else REDIS_PASSWORD).",
        panel=CONN,
        default=False,
    ),
    _opt(
        "db",
        Optional[str],
        "--db",
        help="Database number (REDIS_DB, 0; 0 in cluster mode).",
        panel=CONN,
        metavar="N",
    ),
    _opt(
        "tls",
        Optional[bool],
        "--tls/--no-tls",
        help="TLS (REDIS_TLS; auto: on for serverless).",
        panel=CONN,
    ),
    _opt(
        "ca_cert",
        Optional[str],
        "--ca-cert",
        help="CA bundle (REDIS_CA_CERT; default the system store).",
        panel=CONN,
        metavar="PATH",
    ),
    _opt(
        "tls_server_name",
        Optional[str],
        "--tls-server-name",
        help="Name the certificate is checked against (REDIS_TLS_SERVER_NAME).",
        panel=CONN,
    ),
    _opt(
        "resolve",
        Optional[str],
        "--resolve",
        help="Dial ADDR for NAME:PORT, like curl (REDIS_RESOLVE; comma-separated).",
        panel=CONN,
        metavar="NAME:PORT:ADDR",
    ),
    _opt(
        "insecure",
        bool,
        "--insecure",
        help="Skip certificate verification (loudly).",
        panel=CONN,
        default=False,
    ),
    _opt(
        "timeout",
        Optional[str],
        "--timeout",
        help="Connect and read timeout in seconds (REDIS_TIMEOUT, 5).",
        panel=CONN,
        metavar="S",
    ),
    _opt(
        "cluster",
        Optional[bool],
        "--cluster/--no-cluster",
        help="Cluster mode (REDIS_CLUSTER; auto: ask the server).",
        panel=CONN,
    ),
    _opt(
        "iam_auth",
        Optional[bool],
        "--iam-auth",
        help="Sign an ElastiCache IAM auth token as the password (REDIS_IAM_AUTH).",
        panel=CONN,
    ),
    *BASTION_OPTS,
    *AWS,
]

# For the keyspace commands (keys, ttl): a cap on the load they add to each node.
RATE = [
    _opt(
        "rate",
        Optional[str],
        "--rate",
        help="At most N commands per second per node (REDIS_RATE; default no cap).",
        panel="Scan",
        metavar="N",
    ),
]

# For AWS commands: the cache is named by --cache or found from REDIS_HOST.
AWS_CMD = [
    _opt(
        "host",
        Optional[str],
        "--host",
        help="Endpoint used to find the cache (REDIS_HOST).",
        panel=AWS_PANEL,
    ),
    *AWS,
]


def with_settings(*groups: list[inspect.Parameter]) -> Callable[[Callable[..., Any]], Any]:
    extra = [p for group in groups for p in group] + COMMON
    names = {p.name for p in extra}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        # Resolve string annotations (`from __future__ import annotations` in the command
        # module) here, against the command's own globals: typer would look them up in
        # this module's and silently drop the options it cannot resolve.
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except NameError:  # a name only imported for type checking: keep the strings
            hints = {}
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in sig.parameters.values()
            if p.name != "settings"
        ]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
            output.configure(json_mode=given.pop("json_out"), verbose=given.pop("verbose"))
            env_file = given.pop("env_file")
            password = _prompt_password() if given.pop("ask_password", False) else None
            kwargs["settings"] = load(given, env_file=env_file, password=password)
            try:
                return fn(**kwargs)
            except KeyboardInterrupt:
                # typer would swallow a bare KeyboardInterrupt into a silent exit 130
                raise Interrupted("interrupted", "nothing more was done") from None

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise UsageError(
            "--ask-password needs a terminal",
            "set REDIS_PASSWORD in the environment or .env instead",
        )
    import getpass

    return getpass.getpass("Redis password: ")
