"""The Typer app: global options and the command registry; nothing else.

Command modules import their heavy libraries inside the command function, so building
this app (and `--help`) stays cheap.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from closeup_ops import errors, output
from closeup_ops.commands import ping
from closeup_ops.options import version_callback

app = typer.Typer(
    name="closeup-ops",
    help="Operations CLI for an ElastiCache (Redis OSS / Valkey) cache: connect, look "
    "around, snapshot, open the security group, test failover — safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports markdown-it and costs ~200 ms a call.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help"]},
)


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = None,
) -> None:
    """Settings come from flags, then REDIS_* environment variables, then ./.env."""


app.command("ping")(ping.ping)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the one place where exceptions become a line on stderr and an exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="closeup-ops", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - this is the one handler
        if type(exc).__name__ == "Exit":  # typer.Exit / click's Exit: a clean exit
            return int(getattr(exc, "exit_code", 0) or 0)
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            typer.echo(exc.ctx.get_help())
            return 0
        return errors.report(exc, verbose=output.STATE["verbose"])
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
