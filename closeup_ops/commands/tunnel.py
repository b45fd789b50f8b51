"""`closeup-ops tunnel`: the cache through the bastion on local ports any client can use
(a plain forward for a plain standalone cache; the node-rewriting proxy for cluster mode
and TLS), held until Ctrl-C; or, with `-- CMD ARGS`, for CMD's run only."""

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
    tls: bool  # to the cache; the local side is always plain TCP
    tls_server_name: str | None
    tls_verified: bool | None  # None: no TLS; False: --insecure
    proxied: bool
    exports: dict[str, str]
    nodes: list[dict[str, str]] = field(default_factory=list)
    hint: str | None = None
    reader: str | None = None  # serverless: the reader endpoint's local side (AWS: 6380)
    bind: str = "127.0.0.1"  # what the local side listens on


@with_settings(REDIS)
def tunnel(
    settings: Settings,
    command: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="After `--`: a command to run with REDIS_HOST/REDIS_PORT/REDIS_URL pointed at "
            "the tunnel; "
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
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            help="Local address to listen on (default 127.0.0.1; another one needs "
            "--allow-remote-bind).",
            metavar="ADDRESS",
        ),
    ] = "127.0.0.1",
    allow_remote_bind: Annotated[
        bool,
        typer.Option(
            "--allow-remote-bind",
            help="Allow a non-loopback --bind: anyone who reaches it uses the cache "
            "without TLS or a password.",
        ),
    ] = False,
    announce: Annotated[
        Optional[str],
        typer.Option(
            "--announce",
            help="Name or address that clients elsewhere reach this machine by (e.g. "
            "host.docker.internal for apps in containers): written into every node address "
            "the cache hands out, and into the export lines (default: the address each "
            "client dialled).",
            metavar="HOST",
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
    _check_bind(bind, allow_remote_bind)
    if announce is not None:
        announce = _check_announce(announce)
    from closeup_ops.connect.tunnel.session import open_tunnel

    tun = open_tunnel(
        settings,
        local_port=local_port,
        known_hosts=known_hosts,
        accept_new=accept_new_host_key,
        bind=bind,
        announce_host=announce,
    )
    try:
        info = describe(tun)
        if command:
            code = _run_child(tun, command)
            raise typer.Exit(code)
        _hold(tun, info)
    finally:
        tun.close()


def _check_bind(bind: str, allowed: bool) -> None:
    from closeup_ops.connect.tunnel.nodes import is_loopback

    if is_loopback(bind):
        return
    if not allowed:
        raise UsageError(
            f"--bind {bind} would let other machines use the cache through this tunnel "
            "(plain TCP, no password needed)",
            "leave --bind out (127.0.0.1), or add --allow-remote-bind if you really mean it",
        )
    output.warn(
        f"--allow-remote-bind: listening on {bind}; ANYONE who can reach this address uses "
        "the cache WITHOUT TLS AND WITHOUT A PASSWORD"
    )


def _check_announce(text: str) -> str:
    """A host name or IP address alone: it goes into RESP replies and MOVED lines, where a
    space, a CR/LF or a URL would break (or inject into) what every client reads."""
    import re

    from closeup_ops.endpoint import NotAHost, bare_host

    try:
        host = bare_host(text.strip())
    except NotAHost as exc:
        shown = "that value" if exc.may_hold_secret else repr(text)
        raise UsageError(f"--announce {shown} is not a host", str(exc)) from None
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host):
        raise UsageError(
            f"--announce {text!r} is not a host name or address",
            "use letters, digits, '.', '-' (a name) or an IPv4/IPv6 address",
        )
    return host


def describe(tun) -> TunnelInfo:
    from closeup_ops.connect.tunnel.session import CLUSTER_HINT, exports

    s = tun.settings
    return TunnelInfo(
        local=tun.local,
        remote=tun.remote,
        bastion=tun.bastion.where,
        engine=tun.engine.name,
        cluster=tun.cluster,
        tls=s.use_tls,
        tls_server_name=(s.tls_server_name or s.host) if s.use_tls else None,
        tls_verified=not s.insecure if s.use_tls else None,
        proxied=tun.proxied,
        exports=exports(tun),
        nodes=[{"node": n, "local": lo} for n, lo in tun.nodes()] if tun.proxied else [],
        hint=CLUSTER_HINT if tun.cluster else None,
        reader=f"{tun.announce_host or tun.host}:{tun.reader_port}" if tun.reader_port else None,
        bind=tun.bind,
    )


def _show(info: TunnelInfo) -> None:
    from closeup_ops.connect.tunnel.nodes import is_loopback

    output.line(f"tunnel open: {info.local} -> {info.remote} via {info.bastion}")
    side = "on loopback" if is_loopback(info.bind) else f"on {info.bind}, reachable from elsewhere"
    if info.tls and not info.tls_verified:
        output.line(
            "TLS to the cache is NOT verified (--insecure): any certificate is accepted; "
            f"the local side is plain TCP {side}"
        )
    elif info.tls:
        output.line(
            f"TLS to the cache is verified against {info.tls_server_name} (each node's own "
            f"name in cluster mode); the local side is plain TCP {side}"
        )
    if len(info.nodes) > 1:
        output.table(
            ["cache node", "local endpoint"],
            [[n["node"], n["local"]] for n in info.nodes],
            title=f"cluster: {len(info.nodes)} node(s); their addresses are rewritten "
            "to these in every reply and redirect",
        )
    if info.hint:
        output.line(info.hint)
    if info.reader:
        output.line(
            f"reader endpoint (port 6380 on AWS; reads after READONLY): {info.reader} "
            "(REDIS_READER_PORT)"
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

    from closeup_ops.connect.tunnel.session import CLUSTER_HINT, child_env

    if tun.cluster:
        output.info(CLUSTER_HINT)  # stderr: the child owns stdout
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
