"""`cost`: find the cache, read its usage, price it, and run the what-ifs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.connect.cache_ref import SERVERLESS, CacheRef
from closeup_ops.ops.aws.cost import (
    DATA_TRANSFER,
    HOURS_PER_MONTH,
    Scenario,
    Usage,
    Window,
    backup_note,
    current_scenario,
    node_usage,
    serverless_usage,
    window_for,
)
from closeup_ops.ops.aws.cost_whatif import (
    BreakEven,
    NoTtl,
    break_even,
    layout_scenario,
    no_ttl_from_summary,
    nodes_whatif,
    serverless_whatif,
    smallest_layout,
)
from closeup_ops.ops.aws.prices import PriceBook, price_book
from closeup_ops.settings import Settings


@dataclass
class UsageFigures:
    data_stored_avg_gb: float | None
    data_stored_peak_gb: float | None
    ecpus: float | None
    nodes: int


@dataclass
class CostReport:
    cache: str
    kind: str
    engine: str
    region: str
    currency: str
    window: Window
    prices: str  # "list prices as of ..." / "AWS Price List API, fetched ..."
    price_origin: str
    usage: UsageFigures
    current: Scenario
    what_ifs: list[Scenario]
    break_even: list[BreakEven]
    no_ttl: NoTtl | None
    no_ttl_note: str | None
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _engine(ref: CacheRef) -> str:
    return (ref.engine or "redis").lower()


def _window(ref: CacheRef, usage: Usage, start: dt.datetime, end: dt.datetime) -> Window:
    hours = int((end - start).total_seconds() // 3600)
    if ref.kind == SERVERLESS:
        with_data = len(usage.hourly_gib)
    else:
        with_data = max((n.hours for n in usage.nodes), default=0)
    iso = "%Y-%m-%dT%H:%MZ"
    return Window(start.strftime(iso), end.strftime(iso), hours, with_data)


def _whatifs(
    ref: CacheRef,
    usage: Usage,
    window: Window,
    book: PriceBook,
    valkey: PriceBook | None,
    current: Scenario,
) -> tuple[list[Scenario], list[BreakEven]]:
    serverless = ref.kind == SERVERLESS
    scenarios: list[Scenario] = []
    pairs: list[tuple[Scenario, Scenario]] = []
    if valkey is not None:
        if serverless:
            scenarios.append(
                serverless_whatif("on Valkey (serverless)", usage, valkey, window, True)
            )
        else:
            scenarios.append(nodes_whatif("on Valkey (same nodes)", usage, valkey))
            scenarios.append(
                serverless_whatif("on Valkey (serverless)", usage, valkey, window, False)
            )
    if serverless:
        layout = layout_scenario(
            smallest_layout(usage.peak_gib, book), book, usage.peak_gib, window.hours
        )
        scenarios.append(layout)
        pairs.append((current, layout))
        if valkey is not None:
            vlayout = layout_scenario(
                smallest_layout(usage.peak_gib, valkey), valkey, usage.peak_gib, window.hours
            )
            vlayout.name = "smallest Valkey node-based layout with one replica"
            scenarios.append(vlayout)
            pairs.append((scenarios[0], vlayout))
    else:
        on_serverless = serverless_whatif(
            f"serverless ({_engine(ref)})", usage, book, window, False
        )
        scenarios.append(on_serverless)
        pairs.append((on_serverless, current))
        if valkey is not None:
            pairs.append((scenarios[1], current))
        layout = layout_scenario(
            smallest_layout(usage.peak_gib, book), book, usage.peak_gib, window.hours
        )
        scenarios.append(layout)
    ecpu_month = None
    if serverless and usage.ecpus is not None and window.hours_with_data:
        ecpu_month = usage.ecpus / 1e6 * HOURS_PER_MONTH / window.hours_with_data
    points = [break_even(s, n, ecpu_month if serverless else None) for s, n in pairs]
    return scenarios, [p for p in points if p is not None]


def _backups(ec: Any, ref: CacheRef) -> str:
    from closeup_ops.ops.aws.snapshots import list_snapshots

    try:
        return backup_note(list_snapshots(ec, ref), None)
    except Exception as exc:  # a listing refused must not cost the whole report
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        return backup_note(None, code)


def sample_no_ttl(
    settings: Settings, limit: int, avg_gib: float | None, stored_month: float | None
) -> NoTtl:
    """A SCAN sample of at most `limit` keys (keys --summary's code), never a full scan."""
    from closeup_ops.connect.open import open_redis
    from closeup_ops.ops.keyspace.spec import ScanSpec
    from closeup_ops.ops.keyspace.summary import summarize

    with open_redis(settings) as target:
        summary = summarize(target, ScanSpec(limit=limit), top=0)
    return no_ttl_from_summary(summary, limit, avg_gib, stored_month)


def should_sample(settings: Settings, ref: CacheRef, keys: bool | None) -> str | None:
    """None to sample; else why not."""
    if keys is False:
        return "skipped: --no-keys"
    if (ref.engine or "").lower() == "memcached":
        return "skipped: memcached has no TTL summary"
    if keys:
        return None
    names = {h.strip().lower().rstrip(".") for h in (settings.host, settings.tls_server_name) if h}
    if settings.via_bastion or names & ref.addresses():
        return None
    return (
        "skipped: REDIS_HOST is not this cache's endpoint (set it, use --via-bastion, "
        "or pass --keys to sample the configured server)"
    )


def cost_report(
    settings: Settings,
    since_s: int,
    price_file: str | None = None,
    sample: int = 10_000,
    keys: bool | None = None,
    now: dt.datetime | None = None,
    pricing: Any | None = None,
) -> CostReport:
    from closeup_ops import errors
    from closeup_ops.connect.aws import aws_client, find_cache, resolve_region

    ec = aws_client(settings, "elasticache")
    ref = find_cache(settings, client=ec)
    region = str(errors.CONTEXT.get("aws_region") or resolve_region(settings))
    cw = aws_client(settings, "cloudwatch")
    start, end = window_for(since_s, now)
    usage = (serverless_usage if ref.kind == SERVERLESS else node_usage)(cw, ref, start, end)
    window = _window(ref, usage, start, end)
    engine = _engine(ref)
    book = price_book(settings, region, engine, price_file, client=pricing, now=now)
    valkey = None
    if engine != "valkey":
        valkey = price_book(settings, region, "valkey", price_file, client=pricing, now=now)
    current = current_scenario(ref, usage, book, window)
    what_ifs, points = _whatifs(ref, usage, window, book, valkey, current)
    notes = (
        list(usage.notes)
        + book.notes
        + [n for n in (valkey.notes if valkey else []) if n not in book.notes]
    )
    if ref.kind == SERVERLESS and not usage.hourly_gib:
        notes.append("no BytesUsedForCache data in the window: no usage to price")
    avg = sum(g for _, g in usage.hourly_gib) / len(usage.hourly_gib) if usage.hourly_gib else None
    stored = next((ln for ln in current.lines if ln.item == "data stored"), None)
    no_ttl, why = None, should_sample(settings, ref, keys) if sample > 0 else "skipped: --sample 0"
    if why is None:
        try:
            no_ttl = sample_no_ttl(settings, sample, avg, stored.month_usd if stored else None)
        except Exception as exc:
            why = f"skipped: {errors.classify(exc).line()}"
    return CostReport(
        cache=ref.name,
        kind=ref.kind,
        engine=engine,
        region=region,
        currency="USD",
        window=window,
        prices=book.label,
        price_origin=book.origin,
        usage=UsageFigures(
            None if avg is None else round(avg, 6),
            None if usage.peak_gib is None else round(usage.peak_gib, 6),
            usage.ecpus,
            len(usage.nodes),
        ),
        current=current,
        what_ifs=what_ifs,
        break_even=points,
        no_ttl=no_ttl,
        no_ttl_note=why,
        left_out=[DATA_TRANSFER, _backups(ec, ref)],
        notes=notes,
    )
