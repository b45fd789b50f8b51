"""`closeup-ops triage`: one read-only, bounded report for an incident; ranked findings with
evidence and what to do; exit 6 when a finding is critical.

The report is Markdown: readable as plain text on a terminal and pasted as is into the
incident channel (`--markdown FILE` writes it to a file as well). `--json` gives the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import CheckFailed, UsageError
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings


@with_settings(REDIS)
def triage(
    settings: Settings,
    since: Annotated[
        str, typer.Option("--since", help="Window for the slow log, CloudWatch and events.")
    ] = "1h",
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between the two INFO reads (rates).")
    ] = 2.0,
    samples: Annotated[
        int,
        typer.Option("--samples", help="Keys sampled per primary (RANDOMKEY) for hot/big keys."),
    ] = 1000,
    full: Annotated[
        bool,
        typer.Option("--full", help="Look at every key (SCAN) instead of a sample; not bounded."),
    ] = False,
    min_hit_rate: Annotated[
        float, typer.Option("--min-hit-rate", help="Hit rate floor, percent.")
    ] = 90.0,
    markdown: Annotated[
        Optional[str],
        typer.Option(
            "--markdown", help="Also write the report to FILE (Markdown).", metavar="FILE"
        ),
    ] = None,
    no_aws: Annotated[
        bool, typer.Option("--no-aws", help="Skip CloudWatch and AWS events.")
    ] = False,
) -> None:
    """Per node memory, evictions, ops, hit rate, clients and replication (rates from two
    INFO reads), slow log by command, clients by source, hot and big keys by sampling, shard
    imbalance, CloudWatch and AWS events; then ranked findings. Read-only; every part is
    bounded by --timeout and said to be unavailable when it fails. Exit 6 if critical."""
    from closeup_ops.connect.open import open_redis
    from closeup_ops.ops.stats import parse_since
    from closeup_ops.ops.thresholds import Thresholds
    from closeup_ops.ops.triage.run import triage as run

    since_s = parse_since(since)
    if not 0.5 <= interval <= 60:
        raise UsageError(f"--interval {interval:g} is out of range", "use 0.5 to 60 seconds")
    if not 1 <= samples <= 100_000:
        raise UsageError(f"--samples {samples} is out of range", "use 1 to 100000")
    if not 0 <= min_hit_rate <= 100:
        raise UsageError("--min-hit-rate is a percentage", "use 0 to 100")
    target_file = _markdown_path(markdown)
    limits = Thresholds(min_hit_rate=min_hit_rate)
    with open_redis(settings) as target:
        report = run(
            target,
            interval=interval,
            since_s=since_s,
            samples=samples,
            full=full,
            limits=limits,
            aws=not no_aws,
            settings=settings,
        )
    text = to_markdown(report)
    output.render(report, lambda _: output.line(text.rstrip("\n")))
    if target_file is not None:  # after the report is shown: a bad file does not lose it
        target_file.write_text(text)
    if report.critical:
        ids = ", ".join(dict.fromkeys(f.id for f in report.critical))
        raise CheckFailed(
            f"triage: {len(report.critical)} critical finding(s) ({ids})",
            "see the findings and what to do above",
        )


def _markdown_path(name: str | None) -> Path | None:
    if name is None:
        return None
    path = Path(name)
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError(
            f"--markdown {name} is not a file we can write", "name a file in an existing directory"
        )
    return path


# --- Markdown ----------------------------------------------------------------------------


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return ("-" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out + [""]


def to_markdown(report: Any) -> str:
    from closeup_ops.ops.aws.cloudwatch import span

    hb = output.human_bytes
    lines = [
        f"# Triage of {report.endpoint}",
        "",
        f"{report.at} UTC; rates over {report.interval_s:g} s; slow log, CloudWatch and "
        f"events over the last {span(report.since_s)}; took {report.seconds:g} s.",
        "",
        "## Findings",
        "",
    ]
    if not report.findings:
        lines.append("No findings: nothing above the limits in what could be read.")
    for i, f in enumerate(report.findings, 1):
        lines.append(f"{i}. **{f.severity.upper()}** `{f.id}`: {f.title}")
        lines += [f"   - {e}" for e in f.evidence]
        lines.append(f"   - what to do: {f.action}")
        if f.commands:
            lines.append("   - commands: " + ", ".join(f"`{c}`" for c in f.commands))
    lines.append("")
    down = [p for p in report.parts if not p.ok]
    if down or report.nodes_unavailable:
        lines += ["## Unavailable", ""]
        lines += [f"- {p.name}: unavailable: {p.why}" for p in down]
        lines += [f"- nodes, {a}: unavailable: {w}" for a, w in report.nodes_unavailable]
        lines.append("")
    if report.nodes:
        lines += ["## Nodes", ""]
        rows = []
        for n in report.nodes:
            mem = hb(n.used_memory) + (f" / {hb(n.maxmemory)}" if n.maxmemory else " / no limit")
            repl = n.master_link_status and f"link {n.master_link_status}"
            if n.replicas:
                repl = ", ".join(f"{r.address} {r.state} lag {r.lag_s}s" for r in n.replicas)
            rows.append([
                n.address, n.role, mem, n.maxmemory_policy, n.fragmentation, n.keys,
                f"{n.ops_per_s:g}", f"{n.evictions_per_s:g}", f"{n.rejected_per_s:g}",
                "-" if n.hit_rate is None else f"{n.hit_rate:.1f}%",
                f"{n.connected_clients}/{n.blocked_clients}",
                "-" if n.cpu_percent is None else f"{n.cpu_percent:g}%", repl or "-",
            ])  # fmt: skip
        lines += _table(
            ["node", "role", "memory", "policy", "frag", "keys", "ops/s", "evicted/s",
             "rejected/s", "hit rate", "clients/blocked", "cpu", "replication"],
            rows,
        )  # fmt: skip
        for n in report.nodes:
            if n.commands:
                lines.append(
                    f"Commands by time on {n.address}: "
                    + ", ".join(
                        f"{c.command} {c.share:.0%} ({c.calls_per_s:g}/s, {c.usec_per_call:g} us)"
                        for c in n.commands[:5]
                    )
                )
            elif n.commands_note:
                lines.append(f"Commands by time on {n.address}: {n.commands_note}")
        lines.append("")
    if report.shards is not None:
        b = report.shards
        lines += ["## Shards", ""]
        lines += _table(
            ["primary", "memory", "keys", "ops/s"],
            [[s.primary, hb(s.used_memory), s.keys, f"{s.ops_per_s:g}"] for s in b.shards],
        )
        mem, keys, ops = ("-" if r is None else f"{r:g}x"
                          for r in (b.memory_ratio, b.keys_ratio, b.ops_ratio))  # fmt: skip
        lines += [f"Largest shard against the median: memory {mem}, keys {keys}, ops/s {ops}.",
                  ""]  # fmt: skip
    lines += _slowlog_md(report.slowlog) + _clients_md(report.clients) + _keys_md(report.keys)
    lines += _aws_md(report.aws)
    import re

    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


def _slowlog_md(s: Any) -> list[str]:
    if s is None:
        return []
    out = ["## Slow log", ""]
    if not s.commands:
        out += ["No slow commands in the window.", ""]
    else:
        out += _table(
            ["command", "count", "total ms", "worst ms", "latest", "namespaces", "sources"],
            [[c.command, c.count, f"{c.total_ms:g}", f"{c.max_ms:g}", c.latest,
              ", ".join(f"{n} ({k})" for n, k in c.namespaces) or "-",
              ", ".join(f"{n} ({k})" for n, k in c.sources)] for c in s.commands],
        )  # fmt: skip
    notes = [s.key_positions, s.latency_note] + [f"{a}: {w}" for a, w in s.unavailable]
    out += [f"- {n}" for n in notes if n]
    out += [f"- latency event {e.event} on {e.node}: latest {e.latest_ms} ms at {e.latest}, "
            f"worst {e.max_ms} ms" for e in s.latency]  # fmt: skip
    return out + [""]


def _clients_md(c: Any) -> list[str]:
    if c is None:
        return []
    out = [f"## Clients ({c.total} connections, closeup-ops's own {c.own} left out)", ""]
    out += _table(
        ["source", "name", "user", "connections", "nodes", "idle median s", "idle max s",
         "output buffers", "blocked"],
        [[g.source, g.name or "-", g.user or "-", g.connections, g.nodes, f"{g.idle_median_s:g}",
          g.idle_max_s, output.human_bytes(g.omem_bytes), g.blocked] for g in c.groups],
    )  # fmt: skip
    if c.idle_over:
        out.append(f"- {c.idle_over} connection(s) idle for an hour or more: "
                   + ", ".join(f"{h} ({k})" for h, k in c.idle_sources))  # fmt: skip
    out += [f"- {a}: unavailable: {w}" for a, w in c.unavailable]
    return out + [""]


def _keys_md(k: Any) -> list[str]:
    if k is None:
        return []
    hb = output.human_bytes
    how = "every key (--full)" if k.mode == "full" else "a random sample"
    out = [f"## Keys ({k.sampled} keys, {how})", ""]
    if k.namespaces:
        out += _table(
            ["namespace", "sampled keys", "memory", "share", "with TTL"],
            [[n.namespace, n.sampled_keys, hb(n.bytes), f"{n.share:.0%}", f"{n.ttl_share:.0%}"]
             for n in k.namespaces],
        )  # fmt: skip
    if k.biggest:
        out.append("Biggest: " + ", ".join(f"{b.key} {hb(b.bytes)}" for b in k.biggest[:5]))
    if k.hottest:
        out.append("Hottest (LFU): " + ", ".join(f"{h.key} {h.freq}" for h in k.hottest[:5]))
    notes = [k.hot_note, k.memory_note] + [f"{a}: unavailable: {w}" for a, w in k.unavailable]
    out += [f"- {n}" for n in notes if n]
    return out + [""]


def _aws_md(a: Any) -> list[str]:
    if a is None:
        return []
    out = [f"## AWS ({a.cache})", ""]
    cw = a.cloudwatch
    if cw is not None:
        rows = []
        for m in cw.metrics.values():
            if not m.points:
                rows.append([m.name, "no data", "-", "-", "-"])
            elif m.total is not None:
                rows.append([m.name, f"total {m.total:g}", "-", "-", "-"])
            else:
                trend = _trend(m.average, m.latest)
                rows.append([m.name, f"avg {m.average:g}", f"{m.peak:g} at {m.peak_at}",
                             f"{m.latest:g}", trend])  # fmt: skip
        out += _table(["metric", "window", "peak", "latest", "trend"], rows)
    elif a.cloudwatch_note:
        out.append(f"- CloudWatch unavailable: {a.cloudwatch_note}")
    ev = a.events
    if ev is not None:
        if ev.events:
            out += _table(
                ["time (UTC)", "kind", "source", "message"],
                [[e.at, e.kind, e.source, e.message] for e in ev.events[:20]],
            )
        else:
            out.append("- no AWS events in the window")
        if ev.updates:
            out += _table(
                ["service update", "severity", "status", "apply by"],
                [[u.service_update, u.severity, u.status, u.apply_by] for u in ev.updates],
            )
        elif ev.updates_note:
            out.append(f"- {ev.updates_note}")
    elif a.events_note:
        out.append(f"- events unavailable: {a.events_note}")
    return out + [""]


def _trend(average: float | None, latest: float | None) -> str:
    if average is None or latest is None:
        return "-"
    if latest > 1.2 * average + 1e-9:
        return "rising"
    if latest < 0.8 * average - 1e-9:
        return "falling"
    return "steady"
