"""`closeup-ops sandbox up|status|down`: rehearse every command on this machine."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from typing import Annotated, Any

import typer

from closeup_ops import output

app = typer.Typer(
    help="A local stand-in for the whole stack (redis-server processes, a serverless "
    "stand-in, a mocked AWS account, a bastion) to rehearse every command offline.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)


JsonFlag = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout.", rich_help_panel="Output")
]
VerboseFlag = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Show tracebacks for internal errors.", rich_help_panel="Output"
    ),
]


def output_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json and --verbose, and no settings: the sandbox needs none, and the exports of a
    sandbox already stopped (REDIS_CA_CERT naming a deleted file) must not stop
    `sandbox status|down|up` in the same shell."""

    @functools.wraps(fn)
    def wrapper(*args: Any, json_out: bool = False, verbose: bool = False, **kw: Any) -> Any:
        from closeup_ops.errors import Interrupted

        output.configure(json_mode=json_out, verbose=verbose)
        try:
            return fn(*args, **kw)
        except KeyboardInterrupt:
            raise Interrupted("interrupted", "what had started is recorded: sandbox down") from None

    return wrapper


@app.command("up")
@output_only
def up(
    cluster: Annotated[bool, typer.Option("--cluster", help="Also a 3-primary cluster.")] = False,
    serverless: Annotated[
        bool,
        typer.Option(
            "--serverless",
            help="Also a serverless stand-in (TLS, cluster mode, user + password, reader "
            "port, KEYS refused) under a serverless endpoint name; the exports point at it.",
        ),
    ] = False,
    bastion: Annotated[
        bool,
        typer.Option(
            "--bastion",
            help="Also an OpenSSH bastion in front of the caches (a network namespace as "
            "root, else on loopback), for `tunnel` and --via-bastion.",
        ),
    ] = False,
    aws: Annotated[
        bool,
        typer.Option(
            "--aws/--no-aws",
            help="A moto server (with the serverless APIs) seeded with a VPC, security "
            "groups, a replication group and a snapshot.",
        ),
    ] = True,
    json_out: JsonFlag = False,
    verbose: VerboseFlag = False,
) -> None:
    """Start primary+replica redis-servers (and the extras asked for); print the exports."""
    from closeup_ops.ops.sandbox import up as start

    sandbox = start(
        with_cluster=cluster, with_aws=aws, with_serverless=serverless, with_bastion=bastion
    )
    output.render(sandbox, _show_up)


def export_lines(sandbox) -> list[str]:
    """`export K=V` lines; a secret is read from its file by the shell, never printed."""
    lines = [f"export {key}={shlex.quote(value)}" for key, value in sandbox.exports.items()]
    for key, path in sandbox.secret_files.items():
        lines.append(f'export {key}="$(cat {shlex.quote(path)})"')
    return lines


def _show_up(sandbox) -> None:
    output.info(f"sandbox up: {len(sandbox.processes)} processes, state in {sandbox.directory}")
    for p in sandbox.processes:
        output.info(f"  {p.role:<19} pid {p.pid:<8} {p.host}:{p.port}")
    if sandbox.cluster_entry:
        output.info(f"  cluster entry: {sandbox.cluster_entry}")
    if sandbox.serverless:
        s = sandbox.serverless
        output.info(
            f"  serverless cache {s['cache']}: {s['endpoint']} port {s['port']} "
            f"(reader {s['reader_port']}), TLS, cluster mode, user {s['username']}"
        )
    if sandbox.bastion:
        b = sandbox.bastion
        where = f"namespace {b['namespace']}" if b["namespace"] else "loopback"
        output.info(f"  bastion: {b['user']}@{b['host']}:{b['port']} ({where})")
        output.info("  through it: closeup-ops ping --via-bastion; closeup-ops tunnel -- CMD")
    for note in sandbox.notes:
        output.info(f"note: {note}")
    output.info('point closeup-ops at it (paste, or eval "$(closeup-ops sandbox up)"):')
    for line in export_lines(sandbox):
        output.line(line)


@app.command("status")
@output_only
def status(json_out: JsonFlag = False, verbose: VerboseFlag = False) -> None:
    """Show whether each sandbox process still runs and answers."""
    from closeup_ops.errors import CheckFailed, UsageError
    from closeup_ops.ops.sandbox import load_state
    from closeup_ops.ops.sandbox import status as check

    sandbox = load_state()
    if sandbox is None:
        raise UsageError("no sandbox is recorded", "start one with `closeup-ops sandbox up`")
    rows = check(sandbox)
    output.render(
        {"exports": sandbox.exports, "secret_files": sandbox.secret_files, "processes": rows},
        lambda d: output.table(
            ["role", "pid", "port", "running", "answering"],
            [[r.role, r.pid, r.port, r.running, r.answering] for r in rows],
        ),
    )
    if not all(r.running and r.answering for r in rows):
        raise CheckFailed("some sandbox processes are down", "restart: sandbox down; sandbox up")


@app.command("down")
@output_only
def down(json_out: JsonFlag = False, verbose: VerboseFlag = False) -> None:
    """Stop exactly the processes `sandbox up` started, delete its namespace and files."""
    from closeup_ops.ops.sandbox import down as stop

    rows, namespaces = stop()

    def show(_: object) -> None:
        line = f"sandbox down: stopped {sum(r.running for r in rows)} of {len(rows)} processes"
        if namespaces:
            line += f", deleted namespace {', '.join(namespaces)}"
        output.info(line)

    output.render({"stopped": rows, "namespaces": namespaces}, show)
