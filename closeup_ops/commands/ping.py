"""`closeup-ops ping`: PONG, engine and version (valkey 8.0.2), role, cluster mode, TLS,
latency."""

from __future__ import annotations

from typing import Annotated

import typer

from closeup_ops import output
from closeup_ops.errors import UsageError
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings


@with_settings(REDIS)
def ping(
    settings: Settings,
    count: Annotated[int, typer.Option("--count", "-c", help="PINGs per primary.")] = 1,
    interval: Annotated[float, typer.Option(help="Seconds between PINGs.")] = 0.0,
) -> None:
    """PING the cache (every primary in cluster mode): version, role, TLS, latency."""
    if count < 1 or count > 100_000:
        raise UsageError(f"--count {count} is out of range", "use 1 to 100000")
    if interval < 0 or interval > 60:
        raise UsageError(f"--interval {interval} is out of range", "use 0 to 60 seconds")
    from closeup_ops.connect.open import open_redis
    from closeup_ops.ops.ping import ping as run_ping

    with open_redis(settings) as target:
        report = run_ping(target, count=count, interval=interval)
    output.render(report, _show)


def _show(report) -> None:
    mode = "cluster" if report.cluster else "standalone"
    output.line(
        f"{report.reply} from {report.endpoint} ({mode}, TLS {'on' if report.tls else 'off'})"
    )
    rows = [
        [
            n.address,
            n.role,
            f"{n.engine} {n.version}",
            n.replicas,
            f"{n.min_ms:.2f}",
            f"{n.p50_ms:.2f}",
            f"{n.p99_ms:.2f}",
            f"{n.max_ms:.2f}",
        ]
        for n in report.nodes
    ]
    output.table(
        ["node", "role", "engine", "replicas", "min ms", "p50 ms", "p99 ms", "max ms"],
        rows,
        right=("replicas", "min ms", "p50 ms", "p99 ms", "max ms"),
    )
