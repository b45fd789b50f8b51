"""`closeup-ops sandbox up|status|down`: rehearse every command on this machine."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from closeup_ops import output
from closeup_ops.options import with_settings
from closeup_ops.settings import Settings

app = typer.Typer(
    help="A local stand-in for the whole stack (redis-server processes, a mocked AWS "
    "account) to rehearse every command offline.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)


@app.command("up")
@with_settings()
def up(
    settings: Settings,
    cluster: Annotated[bool, typer.Option("--cluster", help="Also a 3-primary cluster.")] = False,
    aws: Annotated[
        bool,
        typer.Option(
            "--aws/--no-aws",
            help="A moto server seeded with a replication group, security groups, a snapshot.",
        ),
    ] = True,
) -> None:
    """Start primary+replica redis-servers (and a cluster, and moto); print the exports."""
    from closeup_ops.ops.sandbox import up as start

    sandbox = start(with_cluster=cluster, with_aws=aws)
    output.render(sandbox, _show_up)


def _show_up(sandbox) -> None:
    output.info(f"sandbox up: {len(sandbox.processes)} processes, state in {sandbox.directory}")
    for p in sandbox.processes:
        output.info(f"  {p.role:<14} pid {p.pid:<8} port {p.port}")
    if sandbox.cluster_entry:
        output.info(f"  cluster entry: {sandbox.cluster_entry}")
    output.info('point closeup-ops at it (paste, or eval "$(closeup-ops sandbox up)"):')
    for key, value in sandbox.exports.items():
        output.line(f"export {key}={shlex.quote(value)}")


@app.command("status")
@with_settings()
def status(settings: Settings) -> None:
    """Show whether each sandbox process still runs and answers."""
    from closeup_ops.errors import CheckFailed, UsageError
    from closeup_ops.ops.sandbox import load_state
    from closeup_ops.ops.sandbox import status as check

    sandbox = load_state()
    if sandbox is None:
        raise UsageError("no sandbox is recorded", "start one with `closeup-ops sandbox up`")
    rows = check(sandbox)
    output.render(
        {"exports": sandbox.exports, "processes": rows},
        lambda d: output.table(
            ["role", "pid", "port", "running", "answering"],
            [[r.role, r.pid, r.port, r.running, r.answering] for r in rows],
        ),
    )
    if not all(r.running and r.answering for r in rows):
        raise CheckFailed("some sandbox processes are down", "restart: sandbox down; sandbox up")


@app.command("down")
@with_settings()
def down(settings: Settings) -> None:
    """Stop exactly the processes `sandbox up` started, and remove its files."""
    from closeup_ops.ops.sandbox import down as stop

    rows = stop()
    output.render(
        {"stopped": rows},
        lambda d: output.info(
            f"sandbox down: stopped {sum(r.running for r in rows)} of {len(rows)} processes"
        ),
    )
