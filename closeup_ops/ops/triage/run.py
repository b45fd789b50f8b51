"""`triage`: every part at once, each bounded, then the findings.

Parts: nodes (two INFO reads `interval` apart), slowlog, clients, keys (sampled after the
second INFO read, so its lookups do not count in the hit rate), aws (CloudWatch over the
window and DescribeEvents / DescribeUpdateActions). Everything is read-only.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.thresholds import Thresholds
from closeup_ops.ops.triage.findings import CRITICAL, Finding, all_findings
from closeup_ops.ops.triage.parts import Unavailable, after, reason, run_parts
from closeup_ops.settings import Settings


@dataclass
class AwsPart:
    cache: str | None
    cloudwatch: Any = None  # cloudwatch.CloudWatchSummary
    cloudwatch_note: str | None = None
    events: Any = None  # events.EventsReport
    events_note: str | None = None


@dataclass
class PartStatus:
    name: str
    ok: bool
    why: str | None
    seconds: float


@dataclass
class TriageReport:
    endpoint: str
    cluster: bool
    at: str  # when it started, UTC
    interval_s: float
    since_s: int
    seconds: float
    parts: list[PartStatus]
    nodes: list[Any] | None  # collect.NodeReport
    nodes_unavailable: list[tuple[str, str]]
    slowlog: Any
    clients: Any
    keys: Any
    aws: AwsPart | None
    shards: Any = None  # collect.ShardBalance, in cluster mode
    findings: list[Finding] = field(default_factory=list)

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == CRITICAL]


def aws_part(settings: Settings, since_s: int) -> AwsPart:
    """Find the cache, then CloudWatch and the events, each failing on its own."""
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws.cloudwatch import fetch
    from closeup_ops.ops.aws.events import cache_events
    from closeup_ops.ops.aws.lookup import lookup
    from closeup_ops.ops.doctor.aws import cache_hosts

    if not settings.cache and not cache_hosts(settings):
        raise Unavailable(
            "no cache to look up (set --cache or ELASTICACHE_CACHE, or REDIS_HOST to the "
            "ElastiCache endpoint)"
        )
    try:
        ec = aws_client(settings, "elasticache")
        cache = lookup(ec, settings)
    except Exception as exc:
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise Unavailable("no AWS credentials") from None
        raise Unavailable(_aws_reason(exc)) from None
    out = AwsPart(cache.name)
    try:
        out.cloudwatch = fetch(aws_client(settings, "cloudwatch"), cache, since_s)
    except Exception as exc:  # noqa: BLE001 - said in the report
        out.cloudwatch_note = _aws_reason(exc)
    try:
        out.events = cache_events(ec, cache, since_s)
    except Exception as exc:  # noqa: BLE001 - said in the report
        out.events_note = _aws_reason(exc)
    return out


def _aws_reason(exc: BaseException) -> str:
    from closeup_ops import errors

    try:
        mapped = errors.classify(exc, None)
    except Exception:  # noqa: BLE001 - the classifier is best effort here
        mapped = None
    return mapped.line() if isinstance(mapped, errors.OpsError) else reason(exc)


def triage(
    target: Any,
    *,
    interval: float,
    since_s: int,
    samples: int,
    full: bool,
    limits: Thresholds,
    aws: bool = True,
    settings: Settings | None = None,
    sleep: Any = time.sleep,
) -> TriageReport:
    from closeup_ops.ops.triage.clients import collect_clients
    from closeup_ops.ops.triage.collect import all_nodes, collect_nodes, shard_balance
    from closeup_ops.ops.triage.keys import sample_keys
    from closeup_ops.ops.triage.slowlog import collect_slowlog

    # the settings asked for: through a tunnel target.settings name its local end instead
    settings = settings or target.settings
    name = settings.endpoint
    started = time.monotonic()
    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    nodes = all_nodes(target, name)
    primaries = target.primaries() if target.cluster else nodes

    def keys_job(futures: dict) -> Any:
        try:
            reports, _ = after(futures, "nodes")
            policies = {n.address: n.maxmemory_policy for n in reports}
        except Unavailable:
            policies = {}
        return sample_keys(primaries, policies, samples, full)

    jobs = {
        "nodes": lambda f: collect_nodes(nodes, interval, sleep),
        "slowlog": lambda f: collect_slowlog(nodes, since_s),
        "clients": lambda f: collect_clients(nodes),
        "keys": keys_job,
    }
    if aws:
        jobs["aws"] = lambda f: aws_part(settings, since_s)
    budget = None if full else interval + settings.timeout + 1
    parts = run_parts(jobs, budget)
    nodes_data, nodes_missing = parts["nodes"].data if parts["nodes"].ok else (None, [])
    report = TriageReport(
        endpoint=name,
        cluster=target.cluster,
        at=at,
        interval_s=interval,
        since_s=since_s,
        seconds=round(time.monotonic() - started, 3),
        parts=[PartStatus(p.name, p.ok, p.why, p.seconds) for p in parts.values()],
        nodes=nodes_data,
        nodes_unavailable=nodes_missing,
        slowlog=parts["slowlog"].data,
        clients=parts["clients"].data,
        keys=parts["keys"].data,
        aws=parts["aws"].data if "aws" in parts else None,
    )
    if report.nodes and report.cluster:
        report.shards = shard_balance(report.nodes)
    if not aws:
        report.parts.append(PartStatus("aws", False, "skipped: --no-aws", 0.0))
    aws_data = report.aws
    report.findings = all_findings(
        report.nodes,
        report.cluster,
        report.slowlog,
        report.clients,
        report.keys,
        aws_data.cloudwatch if aws_data else None,
        aws_data.events if aws_data else None,
        limits,
    )
    return report
