"""`closeup-ops ttl`: TTLs of keys, or over a pattern a histogram and the keys that break
the expected maximum (exit 6)."""

# No `from __future__ import annotations`: typer resolves these option annotations in
# options.py's namespace, where string annotations may not resolve.
from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import CheckFailed, UsageError
from closeup_ops.options import RATE, REDIS, with_settings
from closeup_ops.settings import Settings


@with_settings(REDIS, RATE)
def ttl(
    settings: Settings,
    keys: Annotated[
        Optional[list[str]], typer.Argument(help="Keys to look up.", show_default=False)
    ] = None,
    pattern: Annotated[
        Optional[str],
        typer.Option(
            "--pattern",
            help="Every key matching this glob (SCAN): histogram and keys without expiry.",
        ),
    ] = None,
    expect_max: Annotated[
        Optional[int],
        typer.Option(
            "--expect-max",
            help="Exit 6 if any key has no expiry or a TTL above S seconds.",
            metavar="S",
        ),
    ] = None,
    type_: Annotated[
        Optional[str], typer.Option("--type", help="With --pattern: only keys of this type.")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="With --pattern: stop after N keys.")
    ] = None,
    scan_count: Annotated[int, typer.Option("--scan-count", help="SCAN COUNT hint.")] = 1000,
    parallel: Annotated[
        Optional[int],
        typer.Option(
            "--parallel",
            help="With --pattern: shards worked at once (default 8; at most this "
            "machine's cores when the nodes run on it).",
            show_default=False,
        ),
    ] = None,
    replicas: Annotated[
        bool,
        typer.Option("--replicas", help="With --pattern: scan a replica of each shard."),
    ] = False,
) -> None:
    """TTL of each KEY (-1 no expiry, -2 missing), or --pattern P for a histogram of TTLs
    and the keys without expiry; --expect-max S exits 6 when a key breaks it."""
    if keys and pattern is not None:
        raise UsageError(
            "give keys or --pattern, not both", "e.g. `ttl otp:123` or `ttl --pattern 'otp:*'`"
        )
    if not keys and pattern is None:
        raise UsageError(
            "ttl needs keys or --pattern",
            "e.g. `ttl otp:123` or `ttl --pattern 'otp:*' --expect-max 300`",
        )
    if expect_max is not None and expect_max < 0:
        raise UsageError(f"--expect-max {expect_max} is not valid", "use seconds >= 0")
    if keys and (type_ is not None or limit is not None):
        raise UsageError("--type and --limit apply to --pattern only", "drop them or use --pattern")
    spec = None
    if pattern is not None:
        from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, check_reach, check_spec

        spec = check_spec(ScanSpec(pattern, type_, limit, scan_count))
        reach = check_reach(Reach(parallel, replicas, settings.rate))
    elif replicas:
        raise UsageError("--replicas applies to --pattern only", "drop it or use --pattern")
    from closeup_ops.connect.open import open_redis

    with open_redis(settings) as target:
        if spec is None:
            from closeup_ops.ops.keyspace.ttl import key_ttls

            result: Any = key_ttls(target, list(keys or []), expect_max)
            output.render(result, _show_keys)
        else:
            from closeup_ops.commands.scanning import Notes, progress_fn
            from closeup_ops.ops.keyspace.ttl import ttl_report

            notes = Notes()
            with output.progress("scanning") as update:
                result = ttl_report(
                    target, spec, expect_max, progress=progress_fn(update, notes), reach=reach
                )
            notes.end(result.shards, result.slot_map_changed)
            output.render(result, _show_report)
    if not result.ok:
        raise CheckFailed(_failure(result))


def _failure(result: Any) -> str:
    if hasattr(result, "histogram"):
        parts = []
        if result.no_expiry:
            parts.append(f"{result.no_expiry} have no expiry")
        if result.above_max:
            parts.append(f"{result.above_max} have a TTL above {result.expect_max} s")
        return (
            f"of {result.keys} keys matching '{result.pattern}', {' and '.join(parts)} "
            f"(expected every key to expire within {result.expect_max} s)"
        )
    bad = [k.key for k in result.keys if k.above_max]
    return (
        f"{len(bad)} of {len(result.keys)} keys have no expiry or a TTL above "
        f"{result.expect_max} s: {', '.join(bad[:5])}"
    )


def _ttl_cell(ttl_s: int) -> str:
    return {-1: "-1 (no expiry)", -2: "-2 (missing)"}.get(ttl_s, str(ttl_s))


def _show_keys(result: Any) -> None:
    from closeup_ops.ops.keyspace.encode import display

    rows = [
        [display(k.key.encode()), _ttl_cell(k.ttl)]
        + (["over" if k.above_max else "ok"] if result.expect_max is not None else [])
        for k in result.keys
    ]
    cols = ["key", "ttl (s)"] + (
        [f"<= {result.expect_max} s"] if result.expect_max is not None else []
    )
    output.table(cols, rows, right=("ttl (s)",))


def _show_report(r: Any) -> None:
    from closeup_ops.ops.keyspace.encode import display

    span = "" if r.min_ttl is None else f"; TTL {r.min_ttl}-{r.max_ttl} s"
    output.line(
        f"{r.keys} keys matching '{r.pattern}' on {r.endpoint}: {r.with_ttl} with a "
        f"TTL, {r.no_expiry} without{span}"
    )
    width = max([b.count for b in r.histogram] + [1])
    rows = [[b.label, b.count, "#" * round(30 * b.count / width)] for b in r.histogram]
    output.table(["ttl", "keys", ""], rows, right=("keys",))
    if r.no_expiry_sample:
        output.line(f"keys without expiry (sample of {len(r.no_expiry_sample)}):")
        for key in r.no_expiry_sample:
            output.line("  " + display(key.encode()))
    if r.above_max_sample:
        output.line(f"keys above {r.expect_max} s (sample of {len(r.above_max_sample)}):")
        for k in r.above_max_sample:
            output.line(f"  {display(k.key.encode())}  {k.ttl} s")
    if r.expect_max is not None and r.ok:
        output.line(f"every key expires within {r.expect_max} s")
