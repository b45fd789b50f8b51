"""`closeup-ops stats`: INFO summary and CloudWatch metrics against the guide's thresholds.

`--watch` refreshes like `redis-cli --stat` until Ctrl-C. Ctrl-C is how a watch normally
ends, so it is not reported as an interruption: the exit code says whether a threshold was
breached while watching (0 or 6), as it does for a one-shot run.
"""

import sys
import time
from typing import Annotated, Any

import typer

from closeup_ops import errors, output
from closeup_ops.errors import EXIT_AUTH, EXIT_AWS, EXIT_CONNECT, CheckFailed, UsageError
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings

TH = "Thresholds"
_sleep = time.sleep  # the --watch pause (tests replace it)


@with_settings(REDIS)
def stats(
    settings: Settings,
    since: Annotated[str, typer.Option("--since", help="CloudWatch window: 30m, 1h, 2d.")] = "1h",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Refresh INFO every --interval seconds until Ctrl-C, like redis-cli --stat.",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between --watch refreshes.")
    ] = 1.0,
    count: Annotated[
        int, typer.Option("--count", help="Stop --watch after N refreshes (0: until Ctrl-C).")
    ] = 0,
    max_cpu: Annotated[
        float, typer.Option("--max-cpu", help="CPU limit, percent.", rich_help_panel=TH)
    ] = 70.0,
    max_evictions: Annotated[
        int,
        typer.Option(
            "--max-evictions", help="Evictions allowed in the window.", rich_help_panel=TH
        ),
    ] = 0,
    min_hit_rate: Annotated[
        float, typer.Option("--min-hit-rate", help="Hit rate floor, percent.", rich_help_panel=TH)
    ] = 90.0,
    max_throttled: Annotated[
        int,
        typer.Option(
            "--max-throttled", help="Throttled commands allowed (serverless).", rich_help_panel=TH
        ),
    ] = 0,
    no_aws: Annotated[bool, typer.Option("--no-aws", help="INFO only: skip CloudWatch.")] = False,
    no_info: Annotated[
        bool,
        typer.Option(
            "--no-info",
            help="CloudWatch only: do not connect to Redis (e.g. from outside the VPC).",
        ),
    ] = False,
) -> None:
    """INFO summary (memory, evictions, hit rate, clients, ops/s, role, replication lag) and,
    with AWS access, CloudWatch over --since against the thresholds. Exit 6 on a breach."""
    from closeup_ops.ops.stats import parse_since
    from closeup_ops.ops.thresholds import Thresholds

    since_s = parse_since(since)
    if not 0 < interval <= 3600:
        raise UsageError(f"--interval {interval:g} is out of range", "use 0.1 to 3600 seconds")
    interval = max(interval, 0.1)
    if count < 0:
        raise UsageError(f"--count {count} is not valid", "use 0 (until Ctrl-C) or more")
    if not 0 <= max_cpu <= 100 or not 0 <= min_hit_rate <= 100:
        raise UsageError("--max-cpu and --min-hit-rate are percentages", "use 0 to 100")
    if max_evictions < 0 or max_throttled < 0:
        raise UsageError(
            "--max-evictions and --max-throttled must be 0 or more", "use 0 for none allowed"
        )
    if no_aws and no_info:
        raise UsageError("--no-aws with --no-info leaves nothing to show", "drop one of them")
    limits = Thresholds(max_cpu, max_evictions, min_hit_rate, max_throttled)
    if watch:
        if no_info:
            raise UsageError("--watch refreshes INFO", "drop --no-info")
        _watch(settings, limits, interval, count)
        return
    _once(settings, limits, since_s, no_aws, no_info)


def _once(settings: Settings, limits: Any, since_s: int, no_aws: bool, no_info: bool) -> None:
    from closeup_ops.ops.stats import build_report, collect_info

    info = None
    if not no_info:
        from closeup_ops.connect.open import open_redis

        with open_redis(settings) as target:
            info = collect_info(target)
    cw, note = (
        (None, "skipped: --no-aws") if no_aws else _cloudwatch_or_why(settings, since_s, info)
    )
    if info is None and cw is None:
        raise UsageError(f"no CloudWatch data source ({note})", "drop --no-info")
    report = build_report(settings.endpoint, info, cw, note, limits)
    output.render(report, _show)
    if report.breached:
        names = [j.name for j in report.judgements if j.breached]
        raise CheckFailed(
            f"stats: threshold breached ({', '.join(names)})",
            "see the evidence above; thresholds are set with --max-cpu, "
            "--max-evictions, --min-hit-rate, --max-throttled",
        )


def _cloudwatch_or_why(settings: Settings, since_s: int, info: Any):
    """_cloudwatch, but when INFO was read an AWS refusal (no permission, no such cache, AWS
    out of reach) costs only the CloudWatch half: it is said on stderr and in the report,
    and INFO is still shown and judged. Without INFO there is nothing to show: it stands."""
    try:
        return _cloudwatch(settings, since_s)
    except Exception as exc:
        err = errors.classify(exc)
        if info is None or err.exit_code not in (EXIT_AUTH, EXIT_AWS, EXIT_CONNECT):
            raise
        why = errors.scrub(err.line()).replace("\n", " ")
        output.warn(f"CloudWatch skipped: {why}")
        return None, f"skipped: {why}"


def _cloudwatch(settings: Settings, since_s: int):
    """(CloudWatchSummary, None), or (None, why CloudWatch was skipped)."""
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws.cloudwatch import fetch
    from closeup_ops.ops.aws.lookup import lookup
    from closeup_ops.ops.doctor.aws import cache_hosts

    hosts = cache_hosts(settings)
    if not settings.cache and not hosts:
        return None, (
            "skipped: no cache to look up (set --cache or ELASTICACHE_CACHE, or "
            "REDIS_HOST to the ElastiCache endpoint)"
        )
    try:
        cache = lookup(aws_client(settings, "elasticache"), settings)
    except Exception as exc:
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return None, "skipped: no AWS credentials"
        raise
    return fetch(aws_client(settings, "cloudwatch"), cache, since_s), None


def _pct(part: float, whole: float) -> str:
    return f" ({100 * part / whole:.0f}%)" if whole else ""


def _show(report) -> None:
    info = report.info
    if info is not None:
        mem = output.human_bytes(info.used_memory)
        limit = (
            f" of {output.human_bytes(info.maxmemory)}{_pct(info.used_memory, info.maxmemory)}"
            if info.maxmemory
            else " (no maxmemory limit)"
        )
        rate = "-" if info.hit_rate is None else f"{info.hit_rate:.1f}%"
        lag = "-" if info.repl_lag_s is None else f"{info.repl_lag_s} s"
        if info.repl_lag_bytes is not None:
            lag += f", {info.repl_lag_bytes} bytes behind"
        output.fields_block(
            [
                ("engine", info.engine or "?"),
                ("role", info.role),
                ("memory", mem + limit),
                ("keys", info.keys),
                ("evictions", f"{info.evicted_keys} since start"),
                (
                    "hit rate",
                    f"{rate} ({info.keyspace_hits} hits, {info.keyspace_misses} misses "
                    "since start)",
                ),
                ("clients", info.connected_clients),
                ("ops/s", info.ops_per_sec),
                ("replica lag", lag),
            ],
            title=f"INFO {report.endpoint}",
        )
    cw = report.cloudwatch
    if cw is not None:
        from closeup_ops.ops.aws.cloudwatch import span

        output.line(
            f"CloudWatch {cw.cache} ({cw.kind}), last {span(cw.since_s)}, "
            f"{span(cw.period_s)} periods"
        )
        rows = []
        for m in cw.metrics.values():
            if not m.points:
                rows.append([m.name, m.statistic, "no data", "", ""])
            elif m.total is not None:
                rows.append([m.name, "Sum", f"{m.total:g}", "", ""])
            else:
                rows.append([m.name, m.statistic, f"{m.average:g}", f"{m.peak:g}", f"{m.latest:g}"])
        output.table(
            ["metric", "stat", "total/avg", "peak", "latest"],
            rows,
            right=("total/avg", "peak", "latest"),
        )
        for note in cw.notes:  # no datapoints: said, never shown as zero
            output.line(f"CloudWatch: {note}")
    elif report.cloudwatch_note:
        output.line(f"CloudWatch: {report.cloudwatch_note}")
    output.line("Thresholds")
    for j in report.judgements:
        output.line(f"  {'BREACH' if j.breached else 'ok':<6}  {j.name:<10} {j.evidence}")


# --- --watch ----------------------------------------------------------------------------

COLUMNS = ["time", "keys", "mem", "clients", "ops/s", "hits", "misses", "hit%", "evicted", "lag"]


def _watch(settings: Settings, limits: Any, interval: float, count: int) -> None:
    from closeup_ops.connect.open import open_redis
    from closeup_ops.ops.stats import collect_info, delta, judge_delta

    tty = output.fancy() and not output.json_mode()
    breaches: set[str] = set()
    shown = 0
    try:
        with open_redis(settings) as target:
            before = collect_info(target)
            while True:
                _sleep(interval)
                after = collect_info(target)
                row = delta(before, after)
                row["breached"] = judge_delta(row, limits)
                breaches.update(row["breached"])
                _watch_row(row, shown, tty)
                shown += 1
                before = after
                if count and shown >= count:
                    break
    except KeyboardInterrupt:
        pass  # the normal end of a watch
    if tty:
        sys.stdout.write("\n")
    if breaches:
        raise CheckFailed(
            f"stats --watch: threshold breached ({', '.join(sorted(breaches))})",
            "see the marked rows",
        )


def _watch_row(row: dict[str, Any], shown: int, tty: bool) -> None:
    if output.json_mode():
        output.ndjson(row)
        sys.stdout.flush()
        return
    rate = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.1f}"
    lag = "-" if row["repl_lag_s"] is None else f"{row['repl_lag_s']}s"
    cells = [
        row["time"],
        row["keys"],
        output.human_bytes(row["used_memory"]),
        row["clients"],
        row["ops_per_sec"],
        row["hits"],
        row["misses"],
        rate,
        row["evicted"],
        lag,
    ]
    text = " ".join(f"{str(c):>9}" for c in cells)
    if row["breached"]:
        text += "  BREACH " + ",".join(row["breached"])
    header = " ".join(f"{c:>9}" for c in COLUMNS)
    if tty:
        # in place: header once, then the one data line rewritten
        if shown == 0:
            sys.stdout.write(header + "\n")
        sys.stdout.write("\r\x1b[2K" + text)
    else:
        if shown % 20 == 0:  # redis-cli --stat repeats its header every 20 lines
            sys.stdout.write(header + "\n")
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
