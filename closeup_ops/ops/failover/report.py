"""Turn what the probe recorded into the failover report: outages, downtime, counts, errors
by type, the app URL's availability, the timeline and the limits check."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from closeup_ops.ops.failover.app import AppPoll
from closeup_ops.ops.failover.probe import Attempt, NodeIdentity
from closeup_ops.ops.failover.trigger import AwsEvent


@dataclass
class Outage:
    start: float  # the first failed attempt (probe seconds)
    end: float | None  # the first good attempt after it; None: not recovered
    duration_s: float
    failed_attempts: int
    errors: dict[str, int]


@dataclass
class AppSummary:
    url: str
    polls: int
    healthy: int
    availability_pct: float
    statuses: dict[str, int]
    during_outage: dict[str, int]  # statuses seen while the cache was failing


@dataclass
class Summary:
    downtime_s: float  # sum of outages, each from first failed write to first good one
    recovered: bool
    outages: int
    attempted: int
    acknowledged: int
    failed: int  # attempts not both acknowledged and read back
    write_failures: int  # writes not acknowledged
    lost: int | None  # acknowledged writes gone afterwards (None: read-back failed)
    lost_seqs: list[int]
    errors_by_type: dict[str, int]
    redirects: int  # changes of the node serving the probe's slot (cluster mode)
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    app: AppSummary | None = None


@dataclass
class TimelineEvent:
    t: float
    event: str
    detail: str = ""


@dataclass
class Limits:
    max_downtime: float | None = None
    max_lost: int | None = None
    breaches: list[str] = field(default_factory=list)


def find_outages(attempts: list[Attempt], end: float) -> list[Outage]:
    """Contiguous runs of failed attempts; each ends at the first good attempt after it."""
    out: list[Outage] = []
    current: list[Attempt] = []
    for a in attempts:
        if not a.ok:
            current.append(a)
            continue
        if current:
            out.append(_outage(current, a.t))
            current = []
    if current:
        out.append(_outage(current, None, end))
    return out


def _outage(failed: list[Attempt], end: float | None, last: float | None = None) -> Outage:
    start = failed[0].t
    stop = end if end is not None else max(last or start, start)
    errors = Counter(a.error or "failed" for a in failed)
    return Outage(start, end, round(stop - start, 4), len(failed), dict(errors))


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def summarize(
    attempts: list[Attempt],
    outages: list[Outage],
    lost: list[int] | None,
    redirects: int,
    app: AppSummary | None,
) -> Summary:
    good = [a.latency_ms for a in attempts if a.ok]
    return Summary(
        downtime_s=round(sum(o.duration_s for o in outages), 4),
        recovered=not outages or outages[-1].end is not None,
        outages=len(outages),
        attempted=len(attempts),
        acknowledged=sum(a.acked for a in attempts),
        failed=sum(not a.ok for a in attempts),
        write_failures=sum(not a.acked for a in attempts),
        lost=None if lost is None else len(lost),
        lost_seqs=(lost or [])[:100],
        errors_by_type=dict(Counter(a.error for a in attempts if a.error)),
        redirects=redirects,
        latency_p50_ms=_pct(good, 50),
        latency_p99_ms=_pct(good, 99),
        latency_max_ms=max(good) if good else None,
        app=app,
    )


def _status(p: AppPoll) -> str:
    return str(p.status) if p.status is not None else (p.error or "error")


def app_summary(url: str, polls: list[AppPoll], outages: list[Outage]) -> AppSummary:
    healthy = sum(p.healthy for p in polls)
    during = [
        p
        for p in polls
        if any(o.start <= p.t <= (o.end if o.end is not None else p.t) for o in outages)
    ]
    return AppSummary(
        url=url,
        polls=len(polls),
        healthy=healthy,
        availability_pct=round(100 * healthy / len(polls), 2) if polls else 0.0,
        statuses=dict(Counter(_status(p) for p in polls)),
        during_outage=dict(Counter(_status(p) for p in during)),
    )


def timeline(
    *,
    end: float,
    trigger: tuple[float, str] | None,
    trigger_done: float | None,
    outages: list[Outage],
    before: NodeIdentity | None,
    identities: list[NodeIdentity],
    aws_events: list[AwsEvent],
    polls: list[AppPoll],
) -> list[TimelineEvent]:
    events = [TimelineEvent(0.0, "start", f"primary {_node(before)}" if before else "")]
    if trigger is not None:
        detail = trigger[1]
        if trigger_done is not None:
            detail += f" (returned after {trigger_done - trigger[0]:.3f} s)"
        events.append(TimelineEvent(trigger[0], "trigger", detail))
    for i, o in enumerate(outages):
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(o.errors.items()))
        events.append(TimelineEvent(o.start, "first error" if i == 0 else "error", kinds))
        if o.end is not None:
            events.append(
                TimelineEvent(o.end, "recovery", f"first good write after {o.duration_s:.3f} s")
            )
    seen = {before.run_id} if before else set()
    for ident in identities:
        if ident.run_id not in seen:
            seen.add(ident.run_id)
            events.append(TimelineEvent(ident.t or 0.0, "new primary", _node(ident)))
    events += [TimelineEvent(e.t, "aws event", f"{e.source}: {e.message}") for e in aws_events]
    events += _app_transitions(polls)
    events.append(TimelineEvent(round(end, 4), "end", ""))
    order = {"start": 0, "end": 2}
    return sorted(events, key=lambda e: (order.get(e.event, 1), e.t))


def _node(ident: NodeIdentity) -> str:
    engine = f" ({ident.engine})" if ident.engine else ""
    return f"{ident.address} run id {ident.run_id[:12]}{engine}"


def _app_transitions(polls: list[AppPoll]) -> list[TimelineEvent]:
    out, healthy = [], True
    for p in polls:
        if p.healthy != healthy:
            healthy = p.healthy
            out.append(
                TimelineEvent(p.t, "app healthy" if healthy else "app unhealthy", _status(p))
            )
    return out


def check_limits(summary: Summary, limits: Limits, recovery_timeout: float) -> list[str]:
    breaches = []
    if not summary.recovered:
        breaches.append(f"writes did not recover within --recovery-timeout {recovery_timeout:g} s")
    if limits.max_downtime is not None and summary.downtime_s > limits.max_downtime:
        breaches.append(
            f"downtime {summary.downtime_s:.3f} s > --max-downtime {limits.max_downtime:g} s"
        )
    if limits.max_lost is not None:
        if summary.lost is None:
            breaches.append("lost writes unknown (the read-back failed) with --max-lost set")
        elif summary.lost > limits.max_lost:
            breaches.append(
                f"{summary.lost} acknowledged writes lost > --max-lost {limits.max_lost}"
            )
    return breaches
