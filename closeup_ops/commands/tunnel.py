"""`closeup-ops tunnel`: an SSH forward through the bastion to the cache (every node in
cluster mode), held until Ctrl-C; or, with `-- CMD ARGS`, for CMD's run only."""

# No `from __future__ import annotations`: options.with_settings re-signs this function and
# typer must see the Annotated objects themselves, not strings.
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import UsageError
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings


@dataclass
class TunnelInfo:
    local: str
    remote: str
    bastion: str
    engine: str
    cluster: bool
    tls: bool
    tls_server_name: str | None
    exports: dict[str, str]
    nodes: list[dict[str, str]] = field(default_factory=list)


@with_settings(REDIS)
def tunnel(
    settings: Settings,
    command: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="After `--`: a command to run with REDIS_HOST/REDIS_PORT pointed at the tunnel; "
            "its exit code is returned and the tunnel closed.",
            show_default=False,
            metavar="[-- CMD ARGS...]",
        ),
    ] = None,
    local_port: Annotated[
        Optional[int],
        typer.Option(
            "--local-port",
            help="Local port (default: the cache port, else a free one).",
            show_default=False,
        ),
    ] = None,
    known_hosts: Annotated[
        Optional[str],
        typer.Option(
            "--known-hosts",
            help="known_hosts file to check the bastion against "
            "(BASTION_KNOWN_HOSTS, ~/.ssh/known_hosts).",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key",
            help="Trust an unknown bastion host key and add it to "
            "known_hosts (a changed key is still refused).",
        ),
    ] = False,
) -> None:
    """SSH tunnel through the bastion to the cache; prints the export lines; Ctrl-C closes."""
    if local_port is not None and not 1 <= local_port <= 65535:
        raise UsageError(f"--local-port {local_port} is not valid", "use 1 to 65535")
    from closeup_ops.connect.tunnel.session import open_tunnel

    tun = open_tunnel(
        settings, local_port=local_port, known_hosts=known_hosts, accept_new=accept_new_host_key
    )
    try:
        info = describe(tun)
        if command:
            code = _run_child(tun, command)
            raise typer.Exit(code)
        _hold(tun, info)
    finally:
        tun.close()


def describe(tun) -> TunnelInfo:
    from closeup_ops.connect.tunnel.session import exports

    local = tun.local_settings
    return TunnelInfo(
        local=tun.entry.local,
        remote=tun.entry.remote,
        bastion=tun.bastion.where,
        engine=tun.engine.name,
        cluster=tun.cluster,
        tls=local.use_tls,
        tls_server_name=local.server_name if local.use_tls else None,
        exports=exports(tun),
        nodes=[{"node": f.remote, "local": f.local} for f in tun.forwards] if tun.cluster else [],
    )


def _show(info: TunnelInfo) -> None:
    output.line(f"tunnel open: {info.local} -> {info.remote} via {info.bastion}")
    if info.tls:
        output.line(f"TLS is verified against {info.tls_server_name} (not 127.0.0.1)")
    if info.nodes:
        output.table(
            ["cluster node", "local forward"],
            [[n["node"], n["local"]] for n in info.nodes],
            title=f"cluster: {len(info.nodes)} node(s) mapped",
        )
        output.line(
            "closeup-ops commands remap these addresses (run them with "
            "`closeup-ops tunnel -- CMD` or --via-bastion); other cluster clients "
            "need the same mapping"
        )
    output.line("export " + " ".join(f"{k}={v}" for k, v in info.exports.items()))
    output.info("Ctrl-C closes the tunnel")


def _hold(tun, info: TunnelInfo) -> None:
    """Print, then until Ctrl-C (or SIGTERM) watch the SSH session and reconnect when it
    drops. Ctrl-C is the normal way out (exit 0) from the moment anything is printed."""
    import signal
    import time

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        output.render(info, _show)
        while True:
            time.sleep(0.25)
            tun.check_alive()
    except KeyboardInterrupt:
        output.info("closing the tunnel")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_child(tun, command: list[str]) -> int:
    import subprocess

    from closeup_ops.connect.tunnel.session import child_env

    try:
        proc = subprocess.Popen(command, env=child_env(tun))
    except FileNotFoundError:
        output.info(f"closeup-ops: error: command not found: {command[0]}: check the name and PATH")
        return 127
    except PermissionError:
        output.info(f"closeup-ops: error: {command[0]} is not executable: chmod +x it")
        return 126
    while True:
        try:
            try:
                return proc.wait(0.25)
            except subprocess.TimeoutExpired:
                tun.check_alive()  # a long CMD keeps its tunnel across a dropped session
        except KeyboardInterrupt:
            continue  # the child got the Ctrl-C too; its exit code is the answer
