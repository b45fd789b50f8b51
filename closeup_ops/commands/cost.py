"""`closeup-ops cost`: what the cache costs from its own usage, and what would cost less."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import UsageError
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings


@with_settings(REDIS)
def cost(
    settings: Settings,
    since: Annotated[
        str, typer.Option("--since", help="Usage window: 12h, 7d, 30d (whole hours; 1h to 63d).")
    ] = "30d",
    price_file: Annotated[
        Optional[str],
        typer.Option(
            "--price-file",
            help="Prices from this JSON file (the format of the shipped table) instead of "
            "the AWS Price List API.",
            metavar="PATH",
        ),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            help="Keys to SCAN for the no-TTL what-if (0: none; never a full scan).",
        ),
    ] = 10_000,
    keys: Annotated[
        Optional[bool],
        typer.Option(
            "--keys/--no-keys",
            help="Sample the keyspace (default: when REDIS_HOST is this cache's endpoint).",
        ),
    ] = None,
) -> None:
    """Serverless: GB-hours of data stored (minimum metered storage hour by hour) and
    ECPUs from CloudWatch; node-based: node-hours x the on-demand price of every node.
    Projected to a 30-day month, with the price source and date, then what-ifs: Valkey,
    serverless vs the smallest node layout (break-even), storage held by keys without TTL."""
    from closeup_ops.ops.aws.cost_report import cost_report
    from closeup_ops.ops.stats import parse_since

    since_s = parse_since(since)
    if since_s < 3600:
        raise UsageError(f"--since {since} is shorter than an hour", "use 1h to 63d")
    if not 0 <= sample <= 1_000_000:
        raise UsageError(f"--sample {sample} is not valid", "use 0 to 1000000 keys")
    if price_file:  # a bad file is a usage error before any AWS call
        from pathlib import Path

        from closeup_ops.ops.aws.prices import load_table

        load_table(Path(price_file))
    report = cost_report(settings, since_s, price_file=price_file, sample=sample, keys=keys)
    output.render(report, _show)


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.4f}"


def _qty(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if value else "0"


def _price(line: Any) -> str:
    if line.price_usd is None:
        return "no price"
    return f"{line.price_usd:g} {line.price_unit}"


def _scenario(s: Any, title: str) -> None:
    rows = [
        [
            ln.item,
            f"{_qty(ln.quantity)} {ln.unit}",
            _price(ln),
            _usd(ln.window_usd),
            _usd(ln.month_usd),
        ]
        for ln in s.lines
    ]
    if rows:
        output.table(
            ["item", "usage", "price", "window USD", "month USD"],
            rows,
            title=title,
            right=("window USD", "month USD"),
        )
    else:
        output.line(title)
    total = f"  total: {_usd(s.window_usd)} USD in the window, {_usd(s.month_usd)} USD a month"
    output.line(total if s.lines else "  (nothing to price)")
    for why in s.left_out:
        output.line(f"  left out: {why}")
    for note in s.notes:
        output.line(f"  note: {note}")


def _show(r: Any) -> None:
    w = r.window
    output.line(
        f"{r.cache} ({r.kind}, {r.engine}, {r.region}): {w.start} to {w.end}, {w.hours} h "
        f"({w.hours_with_data} h with usage); month = 30 days"
    )
    output.line(f"prices: {r.prices}")
    u = r.usage
    if u.data_stored_avg_gb is not None:
        output.line(
            f"data stored: average {u.data_stored_avg_gb:.3f} GB, "
            f"peak {u.data_stored_peak_gb:.3f} GB"
            + ("" if u.ecpus is None else f"; ECPUs {u.ecpus:,.0f}")
        )
    output.line()
    _scenario(r.current, "This cache")
    for s in r.what_ifs:
        output.line()
        _scenario(s, f"What if: {s.name}")
    if r.break_even:
        output.line()
        output.line("Break-even")
        for p in r.break_even:
            output.line(f"  {p.text}")
    output.line()
    if r.no_ttl is not None:
        n = r.no_ttl
        money = "" if n.month_usd is None else f", about {_usd(n.month_usd)} USD a month"
        size = "" if n.est_gib is None else f" (~{n.est_gib:.3f} GB)"
        output.line(
            f"Keys without TTL: {n.share:.1%} of the sampled {n.weighted_by}{size}{money}; {n.note}"
        )
        for ns in n.namespaces[:10]:
            est = (
                ""
                if ns.est_bytes_without_ttl is None
                else (f", ~{output.human_bytes(ns.est_bytes_without_ttl)}")
            )
            output.line(f"  {ns.namespace}: {ns.keys_without_ttl} of {ns.keys_sampled} keys{est}")
    else:
        output.line(f"Keys without TTL: {r.no_ttl_note}")
    for item in r.left_out:
        output.line(item)
    for note in r.notes:
        output.line(f"note: {note}")
