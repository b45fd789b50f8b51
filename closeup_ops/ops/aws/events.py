"""What AWS did to a cache: DescribeEvents for the cache and its member clusters (or the
serverless cache) over a window, newest first, then the cache's pending service updates
(DescribeUpdateActions). Used by `events` and by `triage`.

ElastiCache keeps events for 14 days, so a longer window is cut to 14 days (and says so).
Serverless caches have no update actions: AWS applies their updates itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.aws.lookup import CACHE_CLUSTER, REPLICATION_GROUP, SERVERLESS, CacheFacts

KEPT_S = 14 * 86400  # DescribeEvents returns at most the last 14 days
PAGE = 100
MAX_PAGES = 20  # per source: 2,000 events is more than an incident reads
MEMBER_CALLS = 10  # more members than this: one call for every cache-cluster event, filtered

# Words in an event's message -> what kind of event it is (first match wins).
KINDS = [
    ("failover", ("failover", "failed over", "promot")),
    ("node-replacement", ("replac", "recover", "restart", "reboot", "node failure")),
    ("maintenance", ("maintenance", "service update", "patch", "upgrad", "engine version")),
    ("snapshot", ("snapshot", "backup")),
    ("scaling", ("scal", "modif", "shard", "node group", "added", "removed", "resiz")),
]
# Update actions that are still to do (the rest are done or do not apply).
PENDING = ["not-applied", "waiting-to-start", "in-progress", "scheduling", "scheduled", "stopped"]


@dataclass
class CacheEvent:
    at: str  # ISO 8601, UTC
    source: str
    source_type: str
    kind: str  # failover, node-replacement, maintenance, snapshot, scaling, other
    message: str


@dataclass
class UpdateAction:
    service_update: str
    target: str  # the replication group or cache cluster it applies to
    severity: str
    type: str
    status: str  # UpdateActionStatus
    release_date: str | None
    apply_by: str | None  # ServiceUpdateRecommendedApplyByDate
    nodes_updated: str | None


@dataclass
class EventsReport:
    cache: str
    kind: str
    since_s: int
    sources: list[str]
    events: list[CacheEvent]
    truncated: bool  # a source had more than MAX_PAGES pages
    updates: list[UpdateAction] = field(default_factory=list)
    updates_note: str | None = None
    note: str | None = None  # e.g. the window was cut to 14 days


def kind_of(message: str) -> str:
    text = message.lower()
    for kind, words in KINDS:
        if any(w in text for w in words):
            return kind
    return "other"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return str(value)


def sources_of(cache: CacheFacts) -> list[tuple[str, str | None]]:
    """(SourceType, SourceIdentifier) whose events are the cache's. A group with more than
    MEMBER_CALLS members is asked for all cache-cluster events once (None), filtered here."""
    if cache.kind == SERVERLESS:
        return [("serverless-cache", cache.name)]
    if cache.kind == REPLICATION_GROUP:
        members = cache.member_clusters
        if len(members) > MEMBER_CALLS:
            return [("replication-group", cache.name), ("cache-cluster", None)]
        return [("replication-group", cache.name)] + [("cache-cluster", m) for m in members]
    return [("cache-cluster", cache.name)]


def _pages(call: Any, key: str, **kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
    """Every page of a Marker-paginated ElastiCache call, at most MAX_PAGES."""
    out: list[dict[str, Any]] = []
    marker = None
    for _ in range(MAX_PAGES):
        page = call(MaxRecords=PAGE, **kwargs, **({"Marker": marker} if marker else {}))
        out += page.get(key, [])
        marker = page.get("Marker")
        if not marker:
            return out, False
    return out, True


def cache_events(
    ec: Any, cache: CacheFacts, since_s: int, now: dt.datetime | None = None
) -> EventsReport:
    """Events of the cache and its members over the last `since_s` seconds, newest first;
    then its pending update actions."""
    end = now or dt.datetime.now(dt.timezone.utc)
    note = None
    if since_s > KEPT_S:
        note = "AWS keeps events for 14 days: the window was cut to 14 days"
        since_s = KEPT_S
    start = end - dt.timedelta(seconds=since_s)
    sources = sources_of(cache)
    events: list[CacheEvent] = []
    truncated = False
    members = set(cache.member_clusters)
    for source_type, ident in sources:
        named = {"SourceIdentifier": ident} if ident else {}
        raw, cut = _pages(
            ec.describe_events,
            "Events",
            **named,
            SourceType=source_type,
            StartTime=start,
            EndTime=end,
        )
        truncated |= cut
        if ident is None:
            raw = [e for e in raw if e.get("SourceIdentifier") in members]
        for e in raw:
            message = str(e.get("Message", ""))
            events.append(
                CacheEvent(
                    at=_iso(e.get("Date")) or "",
                    source=str(e.get("SourceIdentifier", ident or "?")),
                    source_type=str(e.get("SourceType", source_type)),
                    kind=kind_of(message),
                    message=message,
                )
            )
    events.sort(key=lambda e: e.at, reverse=True)
    names = [cache.name] + (cache.member_clusters if cache.kind == REPLICATION_GROUP else [])
    report = EventsReport(cache.name, cache.kind, since_s, names, events, truncated, note=note)
    report.updates, report.updates_note = update_actions(ec, cache)
    return report


def update_actions(ec: Any, cache: CacheFacts) -> tuple[list[UpdateAction], str | None]:
    """Pending service updates of the cache, most severe first; (list, note)."""
    if cache.kind == SERVERLESS:
        return [], "serverless caches are updated by AWS: no update actions to apply"
    kwargs: dict[str, Any] = {"UpdateActionStatus": PENDING}
    if cache.kind == REPLICATION_GROUP:
        kwargs["ReplicationGroupIds"] = [cache.name]
    elif cache.kind == CACHE_CLUSTER:
        kwargs["CacheClusterIds"] = [cache.name]
    raw, _ = _pages(ec.describe_update_actions, "UpdateActions", **kwargs)
    order = {"critical": 0, "important": 1, "medium": 2, "low": 3}
    out = [
        UpdateAction(
            service_update=str(a.get("ServiceUpdateName", "")),
            target=str(a.get("ReplicationGroupId") or a.get("CacheClusterId") or cache.name),
            severity=str(a.get("ServiceUpdateSeverity", "?")),
            type=str(a.get("ServiceUpdateType", "?")),
            status=str(a.get("UpdateActionStatus", "?")),
            release_date=_iso(a.get("ServiceUpdateReleaseDate")),
            apply_by=_iso(a.get("ServiceUpdateRecommendedApplyByDate")),
            nodes_updated=a.get("NodesUpdated"),
        )
        for a in raw
    ]
    out.sort(key=lambda u: (order.get(u.severity, 9), u.apply_by or "9999", u.service_update))
    return out, None if out else "no pending service updates"
