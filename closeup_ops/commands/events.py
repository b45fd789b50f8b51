"""`closeup-ops events`: what AWS did to the cache (failover, node replacement, maintenance,
snapshots, scaling), newest first, then its pending service updates."""

from __future__ import annotations

from typing import Annotated

import typer

from closeup_ops import output
from closeup_ops.options import AWS_CMD, with_settings
from closeup_ops.settings import Settings


@with_settings(AWS_CMD)
def events(
    settings: Settings,
    since: Annotated[
        str, typer.Option("--since", help="How far back: 30m, 6h, 2d (AWS keeps 14 days).")
    ] = "24h",
) -> None:
    """AWS events of the cache and its member clusters (or the serverless cache), newest
    first, then the pending service updates (DescribeUpdateActions)."""
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws.events import cache_events
    from closeup_ops.ops.aws.lookup import lookup
    from closeup_ops.ops.stats import parse_since

    since_s = parse_since(since)
    ec = aws_client(settings, "elasticache")
    report = cache_events(ec, lookup(ec, settings), since_s)
    output.render(report, show)


def show(report) -> None:
    from closeup_ops.ops.aws.cloudwatch import span

    output.line(
        f"Events of {report.cache} ({report.kind}: {', '.join(report.sources)}), "
        f"last {span(report.since_s)}, newest first"
    )
    if report.note:
        output.line(f"  {report.note}")
    if report.events:
        output.table(
            ["time (UTC)", "kind", "source", "message"],
            [[e.at, e.kind, e.source, e.message] for e in report.events],
        )
    else:
        output.line("  no events in this window")
    if report.truncated:
        output.line("  (more events than shown: narrow --since)")
    output.line("Pending service updates")
    if report.updates:
        output.table(
            ["service update", "severity", "type", "status", "apply by", "target"],
            [
                [u.service_update, u.severity, u.type, u.status, u.apply_by or "-", u.target]
                for u in report.updates
            ],
        )
    else:
        output.line(f"  {report.updates_note}")
