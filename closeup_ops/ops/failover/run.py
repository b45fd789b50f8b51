"""failover-test: trigger a failover (or not) and measure what a client saw.

The probe runs on the calling thread (so Ctrl-C lands there and stops it cleanly); the
trigger runs on its own thread at `trigger_after` seconds, so a slow TestFailover call does
not show up as a gap in the probe; the app URL is polled on a third.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import errors
from closeup_ops.errors import ConnectError, UsageError
from closeup_ops.ops.failover import trigger as trig
from closeup_ops.ops.failover.app import UrlPoller, check_url, public_url
from closeup_ops.ops.failover.probe import (
    Attempt,
    NodeIdentity,
    Probe,
    delete_keys,
    keyspace_for,
    probe_client,
    probe_timeout,
    read_back,
)
from closeup_ops.ops.failover.report import (
    Limits,
    Outage,
    Summary,
    TimelineEvent,
    app_summary,
    check_limits,
    find_outages,
    summarize,
    timeline,
)
from closeup_ops.settings import Settings

TRIGGERS = ("aws", "cluster", "none")
IDENTITY_EVERY = 1.0  # seconds between "who is the primary" checks while all is well


@dataclass
class FailoverOptions:
    trigger: str = "none"
    shard: str | None = None
    duration: float = 30.0
    interval: float = 0.05
    timeout: float | None = None  # per-request probe timeout; None: see probe_timeout()
    trigger_after: float | None = None  # None: 1 s, or a quarter of a shorter --duration
    recovery_timeout: float = 120.0
    probe_url: str | None = None
    max_downtime: float | None = None
    max_lost: int | None = None

    def validate(self) -> None:
        if self.trigger not in TRIGGERS:
            raise UsageError(f"--trigger {self.trigger} is not valid", "use aws, cluster or none")
        _range("--duration", self.duration, 0.1, 86400)
        _range("--interval", self.interval, 0.001, 60)
        _range("--recovery-timeout", self.recovery_timeout, 0, 86400)
        if self.timeout is not None:
            _range("--probe-timeout", self.timeout, 0.01, 3600)
        if self.trigger_after is None:
            self.trigger_after = min(1.0, self.duration / 4)
        if self.trigger != "none" and not 0 <= self.trigger_after < self.duration:
            raise UsageError(
                f"--trigger-after {self.trigger_after:g} is out of range",
                f"use 0 to less than --duration ({self.duration:g} s)",
            )
        if self.max_downtime is not None and self.max_downtime < 0:
            raise UsageError("--max-downtime must be 0 or more", "pass seconds, e.g. 30")
        if self.max_lost is not None and self.max_lost < 0:
            raise UsageError("--max-lost must be 0 or more", "pass a count, e.g. 0")
        if self.probe_url:
            check_url(self.probe_url)


def _range(flag: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UsageError(f"{flag} {value:g} is out of range", f"use {low:g} to {high:g} seconds")


@dataclass
class AwsSection:
    replication_group: str
    node_group: str
    primary_before: str | None
    primary_after: str | None
    events: list[trig.AwsEvent] = field(default_factory=list)


@dataclass
class FailoverReport:
    run_id: str
    endpoint: str
    cluster: bool
    trigger: str
    target: str  # what was failed over: node group / shard / "-"
    started_at: str
    duration_s: float
    interval_s: float
    probe_timeout_s: float
    result: str  # ok | limits broken | interrupted
    breaches: list[str]
    primary_before: NodeIdentity | None
    primary_after: NodeIdentity | None
    summary: Summary
    timeline: list[TimelineEvent]
    outages: list[Outage]
    notes: list[str]
    aws: AwsSection | None
    attempts: list[Attempt]


@contextmanager
def _connected(settings: Settings) -> Iterator[tuple[Any, Settings, Any]]:
    """(target, settings to dial, address remap): through the bastion when asked."""
    from closeup_ops.connect.redis import connect

    if settings.via_bastion:
        from closeup_ops.connect.tunnel.session import tunnelled

        with tunnelled(settings) as (local, remap):
            target = connect(local, address_remap=remap)
            try:
                yield target, local, remap
            finally:
                target.close()
        return
    target = connect(settings)
    try:
        yield target, settings, None
    finally:
        target.close()


def run_failover_test(
    settings: Settings,
    opts: FailoverOptions,
    *,
    elasticache: Any = None,
    stop: threading.Event | None = None,
    on_status: Callable[[str], None] | None = None,
) -> FailoverReport:
    """Run the test; `elasticache` is the boto3 client for --trigger aws (built from settings
    when None). Ctrl-C during the probe ends it early: the report says "interrupted"."""
    opts.validate()
    trig.refuse_serverless(settings, opts.trigger)
    status = on_status or (lambda _text: None)
    group = None
    if opts.trigger == "aws":
        if elasticache is None:
            from closeup_ops.connect.aws import aws_client

            elasticache = aws_client(settings, "elasticache")
        group = trig.prepare_aws(elasticache, settings, opts.shard)
    with _connected(settings) as (target, local, remap):
        if opts.trigger == "cluster" and not target.cluster:
            raise UsageError(
                f"--trigger cluster needs a cluster-mode cache; {settings.endpoint} is standalone",
                "use --trigger aws (ElastiCache) or none",
            )
        slots, shard, trigger_fn, what = None, None, None, "-"
        if target.cluster and group is not None and group.slots:
            slots = group.slots
        elif target.cluster:
            shard = trig.pick_shard(trig.cluster_shards(target.client), opts.shard)
            slots = shard.slots
            what = f"shard {shard.index} ({shard.primary})"
        if group is not None:
            what = f"{group.replication_group} node group {group.node_group}"
            trigger_fn = lambda: trig.test_failover(elasticache, group)  # noqa: E731
        elif opts.trigger == "cluster":
            shard.replicas = trig.shard_replicas(target.client, shard)
            if not shard.replicas:
                trig.cluster_failover(target.client, shard, trig.node_client(local, remap))
            trigger_fn = lambda: trig.cluster_failover(  # noqa: E731
                target.client, shard, trig.node_client(local, remap)
            )
        timeout = opts.timeout or probe_timeout(opts.interval, settings.timeout)
        run_id = uuid.uuid4().hex[:10]
        keys = keyspace_for(run_id, int(opts.duration + opts.recovery_timeout + 600), slots)
        probe = Probe(
            probe_client(local, target.cluster, timeout, remap), keys, target.cluster, local.host
        )
        # through the command's client, with REDIS_TIMEOUT: the probe's timeout is for
        # measuring, not for waiting on the first answer
        before = probe.identity(via=target.client)
        if before is None:
            target.client.ping()  # raises the real reason
            raise ConnectError(
                f"cannot read INFO from {settings.endpoint}", "check the ACL user may run INFO"
            )
        probe.start_clock()
        before.t = 0.0  # the primary at the start
        report = _measure(
            probe,
            opts,
            trigger_fn,
            stop,
            status,
            settings,
            what,
            before,
            elasticache,
            group,
            timeout,
        )
    return report


def _measure(
    probe: Probe,
    opts: FailoverOptions,
    trigger_fn: Callable[[], str] | None,
    stop: threading.Event | None,
    status: Callable[[str], None],
    settings: Settings,
    what: str,
    before: NodeIdentity,
    elasticache: Any,
    group: Any,
    timeout: float,
) -> FailoverReport:
    started_at = probe.started_at
    poller = (
        UrlPoller(opts.probe_url, opts.interval, timeout, probe.now).start()
        if opts.probe_url
        else None
    )
    trigger = (
        trig.TriggerThread(trigger_fn, opts.trigger_after, probe.now).start()
        if trigger_fn
        else None
    )
    identities: list[NodeIdentity] = []
    notes: list[str] = []
    interrupted = False
    status("probing")
    try:
        _loop(probe, opts, trigger, stop, status, identities)
    except KeyboardInterrupt:
        interrupted = True
        notes.append("interrupted (Ctrl-C): the report covers what was measured until then")
    end = probe.now()
    if poller:
        poller.stop()
    if trigger:
        trigger.cancel(1 if interrupted else 60)
        if trigger.error is not None and not interrupted:
            _cleanup(probe)
            raise errors.classify(trigger.error, settings.endpoint)
    status("checking acknowledged writes")
    after = probe.identity()
    acked = [a.seq for a in probe.attempts if a.acked]
    lost: list[int] | None
    try:
        lost = read_back(probe.client, probe.keys, acked, probe.cluster)
    except Exception as exc:
        lost = None
        notes.append(f"read-back of acknowledged writes failed: {type(exc).__name__}: {exc}")
    _cleanup(probe)
    aws = _aws_after(elasticache, group, started_at, notes, before, after) if group else None
    outages = find_outages(probe.attempts, end)
    app = app_summary(public_url(opts.probe_url), poller.polls, outages) if poller else None
    summary = summarize(probe.attempts, outages, lost, probe.redirects, app)
    new_primary = after is not None and after.run_id != before.run_id
    if trigger_fn is not None and not new_primary and not interrupted:
        notes.append("no failover observed: the primary is the same server as before")
    limits = Limits(opts.max_downtime, opts.max_lost)
    breaches = [] if interrupted else check_limits(summary, limits, opts.recovery_timeout)
    result = "interrupted" if interrupted else ("limits broken" if breaches else "ok")
    return FailoverReport(
        run_id=probe.keys.run_id,
        endpoint=settings.endpoint,
        cluster=probe.cluster,
        trigger=opts.trigger,
        target=what,
        started_at=started_at.isoformat(timespec="milliseconds"),
        duration_s=round(end, 3),
        interval_s=opts.interval,
        probe_timeout_s=timeout,
        result=result,
        breaches=breaches,
        primary_before=before,
        primary_after=after,
        summary=summary,
        timeline=timeline(
            end=end,
            trigger=(trigger.started, trigger.detail or "trigger")
            if trigger and trigger.started is not None
            else None,
            trigger_done=trigger.done if trigger else None,
            outages=outages,
            before=before,
            identities=identities + ([after] if after else []),
            aws_events=aws.events if aws else [],
            polls=poller.polls if poller else [],
        ),
        outages=outages,
        notes=notes,
        aws=aws,
        attempts=probe.attempts,
    )


def _loop(
    probe: Probe,
    opts: FailoverOptions,
    trigger: trig.TriggerThread | None,
    stop: threading.Event | None,
    status: Callable[[str], None],
    identities: list[NodeIdentity],
) -> None:
    seq, next_at = 0, 0.0
    failing, check_at, node = False, IDENTITY_EVERY, probe.node
    limit = opts.duration + opts.recovery_timeout
    while True:
        now = probe.now()
        if (stop is not None and stop.is_set()) or (trigger and trigger.error is not None):
            return
        waiting_trigger = trigger is not None and not trigger.finished
        if now >= opts.duration and not failing and not waiting_trigger:
            return
        if now >= limit:
            return
        if next_at > now:
            time.sleep(next_at - now)
            continue
        seq += 1
        attempt = probe.attempt(seq)
        next_at = max(next_at + opts.interval, probe.now())
        if not attempt.ok:
            if not failing:
                status(f"writes failing ({attempt.error})")
            failing = True
            continue
        if failing or attempt.t >= check_at or attempt.node != node:
            if failing:
                status("writes recovered")
            ident = probe.identity()
            if ident is not None:
                identities.append(ident)
            check_at = attempt.t + IDENTITY_EVERY
            node = attempt.node
        failing = False


def _cleanup(probe: Probe) -> None:
    last = probe.attempts[-1].seq if probe.attempts else 0
    try:
        delete_keys(probe.client, probe.keys, last)
    except Exception:
        pass  # the keys expire by themselves
    try:
        probe.client.close()
    except Exception:
        pass


def _aws_after(
    client: Any,
    group: trig.AwsGroup,
    started: datetime.datetime,
    notes: list[str],
    before: NodeIdentity | None,
    after: NodeIdentity | None,
) -> AwsSection:
    # cluster mode on: AWS names no CurrentRole, the nodes say who is primary
    first = group.primary_node or trig.node_name(group, before)
    section = AwsSection(group.replication_group, group.node_group, first, None)
    ended = datetime.datetime.now(datetime.timezone.utc)
    try:
        section.events, capped = trig.collect_events(client, group, started, ended)
        if capped:
            notes.append(capped)
        section.primary_after = trig.aws_primary_now(client, group) or trig.node_name(group, after)
    except Exception as exc:
        notes.append(f"AWS events not collected: {errors.classify(exc).line()}")
    return section
