"""The Typer app: global options and the command registry; nothing else.

Commands load lazily: the registry names each command's module, and only the command being
run is imported and turned into a click command. `--help` lists the summaries from the
registry. This keeps start-up flat as commands are added (building every command's ~30
options costs ~4 ms a command; importing them all, more).
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

# name -> (module, attribute: a command function or a typer.Typer sub-app, summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "ping": (
        "closeup_ops.commands.ping",
        "ping",
        "PING the cache (every primary in cluster mode): version, role, TLS, latency.",
    ),
    "tunnel": (
        "closeup_ops.commands.tunnel",
        "tunnel",
        "SSH tunnel through the bastion to the cache (every cluster node); -- CMD runs CMD.",
    ),
    "keys": ("closeup_ops.commands.keys", "keys", "List, summarise or delete keys (SCAN only)."),
    "ttl": ("closeup_ops.commands.ttl", "ttl", "TTLs of keys, or a histogram over a pattern."),
    "caches": (
        "closeup_ops.commands.caches",
        "caches",
        "List serverless caches, replication groups and cache clusters.",
    ),
    "snapshot": (
        "closeup_ops.commands.snapshot",
        "app",
        "Create, list, restore (to a NEW cache) and delete snapshots.",
    ),
    "sg": (
        "closeup_ops.commands.sg",
        "app",
        "Allow, revoke and show access through the cache's security group.",
    ),
    "failover-test": (
        "closeup_ops.commands.failover",
        "failover_test",
        "Trigger a failover (or watch one) and measure downtime and lost writes.",
    ),
    "doctor": (
        "closeup_ops.commands.doctor",
        "doctor",
        "Troubleshoot step by step: settings, DNS, TCP, TLS, AUTH, cluster, AWS; a fix per fail.",
    ),
    "stats": (
        "closeup_ops.commands.stats",
        "stats",
        "INFO summary and CloudWatch metrics against the guide's thresholds (--watch).",
    ),
    "events": (
        "closeup_ops.commands.events",
        "events",
        "AWS events of the cache (failover, replacement, maintenance), then pending updates.",
    ),
    "triage": (
        "closeup_ops.commands.triage",
        "triage",
        "One read-only incident report: nodes, slow log, clients, hot/big keys, AWS; findings.",
    ),
    "cost": (
        "closeup_ops.commands.cost",
        "cost",
        "What the cache costs from its own usage, a month ahead; Valkey/nodes what-ifs.",
    ),
    "sandbox": (
        "closeup_ops.commands.sandbox",
        "app",
        "A local stand-in for the whole stack to rehearse every command offline.",
    ),
}


class _BrokenPipe(Exception):
    """Carries an EPIPE past click, which would end the run with exit 1 and no word, even
    when the pipe was a socket to the cache rather than our stdout."""

    def __init__(self, original: OSError):
        super().__init__(str(original))
        self.original = original


class LazyGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise _BrokenPipe(exc) from exc
            raise

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attribute, _ = entry
        target = getattr(importlib.import_module(module), attribute)
        if not isinstance(target, typer.Typer):
            single = typer.Typer(rich_markup_mode=None, add_completion=False)
            single.command(name)(target)
            target = single
        command = typer.main.get_command(target)
        command.name = name
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry[2]) for name, entry in COMMANDS.items()])


app = typer.Typer(
    name="closeup-ops",
    cls=LazyGroup,
    help="Operations CLI for an ElastiCache (Redis OSS / Valkey) cache: connect, look "
    "around, snapshot, open the security group, test failover — safely.",
    no_args_is_help=True,
    # --install-completion/--show-completion, and typer's completion protocol, which the
    # scripts in completions/ speak
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports markdown-it and costs ~200 ms a call.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help"]},
)


def _version(value: bool) -> None:
    if value:
        from closeup_ops import __version__

        typer.echo(f"closeup-ops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """Settings come from flags, then REDIS_* environment variables, then ./.env."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the one place where exceptions become a line on stderr and an exit code.
    SIGTERM (a runbook step's timeout, a cancelled job, `kill`) ends a run as Ctrl-C does:
    what was done is reported, a mutation's audit line is written, exit 130."""
    command = typer.main.get_command(app)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: the embedding program owns its signals
        pass
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
        from closeup_ops import errors, output

        if isinstance(exc, _BrokenPipe):
            if output.stdout_gone():  # `| head` has what it wanted: stop quietly, like Unix tools
                output.silence_stdout()
                return 0
            exc = exc.original  # a socket's peer went away: a connection error, said

        return errors.report(exc, verbose=output.STATE["verbose"])
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
