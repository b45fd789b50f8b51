"""`closeup-ops failover-test`: trigger a failover and measure what the client saw."""

# No `from __future__ import annotations` here: typer needs the Annotated options as
# objects, and the with_settings wrapper passes the signature on as it finds it.
from typing import Annotated, Optional

import typer

from closeup_ops import output
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings


@with_settings(REDIS)
def failover_test(
    settings: Settings,
    trigger: Annotated[
        str,
        typer.Option(
            "--trigger",
            help="aws: TestFailover on the replication group; cluster: CLUSTER "
            "FAILOVER on a replica of a self-managed cluster; none: only measure while something "
            "outside acts.",
            metavar="aws|cluster|none",
        ),
    ] = "none",
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            help="Node group id (aws) or shard number / primary host:port (cluster); "
            "default the first.",
        ),
    ] = None,
    duration: Annotated[
        float,
        typer.Option(
            "--duration",
            help="Seconds to probe (longer while writes are still failing).",
            metavar="S",
        ),
    ] = 30.0,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between probe writes.", metavar="S")
    ] = 0.05,
    probe_timeout: Annotated[
        Optional[float],
        typer.Option(
            "--probe-timeout",
            help="Per-request timeout of the probe (default 10 x --interval, "
            "0.25 s at least, REDIS_TIMEOUT at most).",
            metavar="S",
        ),
    ] = None,
    trigger_after: Annotated[
        Optional[float],
        typer.Option(
            "--trigger-after",
            help="Seconds of probing before the trigger (default 1, or --duration / 4).",
            metavar="S",
        ),
    ] = None,
    recovery_timeout: Annotated[
        float,
        typer.Option(
            "--recovery-timeout",
            help="How long past --duration to wait for writes to recover.",
            metavar="S",
        ),
    ] = 120.0,
    probe_url: Annotated[
        Optional[str],
        typer.Option(
            "--probe-url", help="Application health URL polled every interval.", metavar="URL"
        ),
    ] = None,
    max_downtime: Annotated[
        Optional[float],
        typer.Option(
            "--max-downtime",
            help="Exit 6 when write downtime exceeds this many seconds.",
            metavar="S",
        ),
    ] = None,
    max_lost: Annotated[
        Optional[int],
        typer.Option(
            "--max-lost",
            help="Exit 6 when more acknowledged writes than this were lost.",
            metavar="N",
        ),
    ] = None,
) -> None:
    """Trigger a failover (or watch one) while writing and reading probe keys; report downtime,
    lost acknowledged writes, errors by type, AWS events and the app's health."""
    from closeup_ops import audit
    from closeup_ops.errors import CheckFailed, Interrupted, OpsError, classify
    from closeup_ops.ops.failover.run import FailoverOptions, run_failover_test

    opts = FailoverOptions(
        trigger=trigger.lower(),
        shard=shard,
        duration=duration,
        interval=interval,
        timeout=probe_timeout,
        trigger_after=trigger_after,
        recovery_timeout=recovery_timeout,
        probe_url=probe_url,
        max_downtime=max_downtime,
        max_lost=max_lost,
    )
    opts.validate()
    target = settings.cache or settings.endpoint
    try:
        with output.progress("failover-test") as update:
            report = run_failover_test(settings, opts, on_status=update)
    except BaseException as exc:
        err = classify(exc)
        if not isinstance(exc, OpsError) or err.exit_code not in (2,):
            audit.record("failover-test", target, "error", trigger=opts.trigger, error=err.line())
        raise
    s = report.summary
    audit.record(
        "failover-test",
        target,
        report.result,
        run_id=report.run_id,
        trigger=report.trigger,
        failed_over=report.target,
        downtime_s=s.downtime_s,
        attempted=s.attempted,
        acknowledged=s.acknowledged,
        failed=s.failed,
        lost=s.lost,
        breaches=report.breaches,
    )
    output.render(report, _show)
    if report.result == "interrupted":
        raise Interrupted(
            f"interrupted after {report.duration_s:.1f} s",
            "the report above covers what was measured",
        )
    if report.breaches:
        raise CheckFailed("failover-test: " + "; ".join(report.breaches))


def _show(report) -> None:
    s = report.summary
    mode = "cluster" if report.cluster else "standalone"
    output.line(
        f"failover-test {report.run_id} on {report.endpoint} ({mode}), trigger "
        + (f"{report.trigger}: {report.target}" if report.trigger != "none" else "none")
    )
    output.table(
        ["t (s)", "event", "detail"],
        [[f"{e.t:8.3f}", e.event, e.detail] for e in report.timeline],
        title="Timeline",
        right=("t (s)",),
    )
    before, after = report.primary_before, report.primary_after
    pairs = [
        ("result", report.result),
        (
            "downtime",
            f"{s.downtime_s:.3f} s in {s.outages} outage(s)"
            + ("" if s.recovered else " (NOT recovered)"),
        ),
        (
            "writes",
            f"{s.attempted} attempted, {s.acknowledged} acknowledged, "
            f"{s.failed} failed, {'?' if s.lost is None else s.lost} lost",
        ),
        ("errors", ", ".join(f"{k} {v}" for k, v in sorted(s.errors_by_type.items())) or "none"),
        (
            "latency",
            f"p50 {output.ms(_sec(s.latency_p50_ms))}, p99 "
            f"{output.ms(_sec(s.latency_p99_ms))}, max {output.ms(_sec(s.latency_max_ms))}",
        ),
        ("primary before", _node(before)),
        ("primary after", _node(after)),
    ]
    if s.redirects:
        pairs.append(("redirects", str(s.redirects)))
    if s.lost:
        pairs.append(
            (
                "lost seqs",
                ", ".join(map(str, s.lost_seqs[:20])) + (" ..." if len(s.lost_seqs) > 20 else ""),
            )
        )
    if report.aws:
        pairs.append(
            ("aws primary", f"{report.aws.primary_before} -> {report.aws.primary_after or '?'}")
        )
    if s.app:
        pairs.append(
            (
                "app",
                f"{s.app.url}: {s.app.availability_pct:.1f}% healthy of "
                f"{s.app.polls} polls; during the outage: "
                + (", ".join(f"{k} x{v}" for k, v in s.app.during_outage.items()) or "no polls"),
            )
        )
    output.fields_block(pairs, title="Summary")
    for note in report.notes:  # breaches come as the error line (exit 6)
        output.warn(note)


def _node(ident) -> str:
    if ident is None:
        return "-"
    return f"{ident.address} ({ident.run_id[:12]}{', ' + ident.engine if ident.engine else ''})"


def _sec(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000
