"""`closeup-ops keys`: list, summarise or delete keys; SCAN only, every shard (at once in
cluster mode), from replicas with --replicas, at most --rate commands/s per node."""

# No `from __future__ import annotations`: the option annotations name this module's
# panel constants, which typer could not resolve from strings.
import sys
from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.commands.scanning import Notes, progress_fn
from closeup_ops.errors import UsageError
from closeup_ops.options import RATE, REDIS, with_settings
from closeup_ops.settings import Settings

SCAN = "Scan"
SHOW = "Per-key data"
SUMMARY = "Summary"
DELETE = "Delete"


@with_settings(REDIS, RATE)
def keys(
    settings: Settings,
    pattern: Annotated[
        str, typer.Argument(help="Glob to match (SCAN MATCH); default all keys.")
    ] = "*",
    type_: Annotated[
        Optional[str],
        typer.Option(
            "--type",
            help="Only keys of this type (SCAN TYPE): string, list, set, zset, hash, stream.",
            rich_help_panel=SCAN,
        ),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="Stop after N keys.", rich_help_panel=SCAN)
    ] = None,
    scan_count: Annotated[
        int,
        typer.Option(
            "--scan-count", help="SCAN COUNT hint (keys looked at per call).", rich_help_panel=SCAN
        ),
    ] = 1000,
    parallel: Annotated[
        Optional[int],
        typer.Option(
            "--parallel",
            help="Shards worked at once in cluster mode (1: one after the other). "
            "Default 8; at most this machine's cores when the nodes run on it (loopback).",
            show_default=False,
            rich_help_panel=SCAN,
        ),
    ] = None,
    replicas: Annotated[
        bool,
        typer.Option(
            "--replicas",
            help="Scan and read from a replica of each shard (READONLY); deletes stay on "
            "the primaries.",
            rich_help_panel=SCAN,
        ),
    ] = False,
    ttl: Annotated[
        bool,
        typer.Option("--ttl", help="Each key's TTL (PTTL; -1 no expiry).", rich_help_panel=SHOW),
    ] = False,
    memory: Annotated[
        bool,
        typer.Option("--memory", help="Each key's MEMORY USAGE in bytes.", rich_help_panel=SHOW),
    ] = False,
    values: Annotated[
        bool,
        typer.Option(
            "--values",
            help="Each key's type, length and value (masked unless --reveal).",
            rich_help_panel=SHOW,
        ),
    ] = False,
    reveal: Annotated[
        bool,
        typer.Option(
            "--reveal",
            help="Show values in clear (they may be secrets such as OTPs).",
            rich_help_panel=SHOW,
        ),
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Group by namespace: count, bytes, TTL coverage, biggest keys.",
            rich_help_panel=SUMMARY,
        ),
    ] = False,
    separator: Annotated[
        Optional[str],
        typer.Option(
            "--separator", help="Namespace separator (default ':').", rich_help_panel=SUMMARY
        ),
    ] = None,
    depth: Annotated[
        Optional[int],
        typer.Option(
            "--depth", help="Namespace = the first N segments (default 1).", rich_help_panel=SUMMARY
        ),
    ] = None,
    top: Annotated[
        Optional[int],
        typer.Option(
            "--top",
            help="The N biggest keys by MEMORY USAGE (default 10; 0: none).",
            rich_help_panel=SUMMARY,
        ),
    ] = None,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            help="Delete the matching keys (a dry run unless --yes).",
            rich_help_panel=DELETE,
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="With --delete: really UNLINK them.", rich_help_panel=DELETE),
    ] = False,
) -> None:
    """List keys matching PATTERN (SCAN only, every shard in cluster mode, --parallel at
    a time); --summary groups them by namespace; --delete removes them (dry run unless
    --yes)."""
    from closeup_ops.ops.keyspace.spec import Reach, ScanSpec, check_reach, check_spec

    spec = check_spec(ScanSpec(pattern, type_, limit, scan_count))
    reach = check_reach(Reach(parallel, replicas, settings.rate))
    _check_modes(ttl, memory, values, reveal, summary, separator, depth, top, delete, yes)
    from closeup_ops.connect.open import open_redis

    with open_redis(settings) as target:
        if summary:
            top_n = 10 if top is None else top
            _summary(target, spec, separator or ":", depth or 1, top_n, reach)
        elif delete:
            _delete(target, spec, yes, reach)
        else:
            _stream(target, spec, ttl, memory, values, reveal, reach)


def _check_modes(
    ttl: bool,
    memory: bool,
    values: bool,
    reveal: bool,
    summary: bool,
    separator: str | None,
    depth: int | None,
    top: int | None,
    delete: bool,
    yes: bool,
) -> None:
    def refuse(what: str, hint: str) -> None:
        raise UsageError(what, hint)

    if reveal and not values:
        refuse("--reveal needs --values", "add --values to show values")
    if yes and not delete:
        refuse("--yes only applies to --delete", "add --delete (and check the dry run first)")
    if summary and delete:
        refuse("--summary and --delete do not go together", "run them one after the other")
    per_key = [n for n, on in (("--ttl", ttl), ("--memory", memory), ("--values", values)) if on]
    if (summary or delete) and per_key:
        mode = "--summary" if summary else "--delete"
        refuse(f"{per_key[0]} does not apply to {mode}", f"drop {per_key[0]}")
    given = [
        n
        for n, v in (("--separator", separator), ("--depth", depth), ("--top", top))
        if v is not None
    ]
    if given and not summary:
        refuse(f"{given[0]} only applies to --summary", "add --summary")
    if separator is not None and not separator:
        refuse("--separator is empty", "use a character such as ':' or '.'")
    if depth is not None and not 1 <= depth <= 32:
        refuse(f"--depth {depth} is not valid", "use 1 to 32 segments")
    if top is not None and not 0 <= top <= 1000:
        refuse(f"--top {top} is not valid", "use 0 to 1000")


def _stream(
    target: Any, spec: Any, ttl: bool, memory: bool, values: bool, reveal: bool, reach: Any
) -> None:
    """NDJSON (or one key per line) written batch by batch: constant memory. Under
    --replicas each NDJSON object also names the node it was read from (read_from)."""
    from closeup_ops.ops.keyspace.encode import ndjson_batch, text_keys
    from closeup_ops.ops.keyspace.keys import guard, iter_keys
    from closeup_ops.ops.keyspace.spec import ScanStats

    out = sys.stdout.buffer
    as_json = output.json_mode()
    plain = not (ttl or memory or values)
    stats = ScanStats()
    warned = False
    notes = Notes()
    try:
        with guard(stats):
            if not as_json and not plain:
                out.write(_header(ttl, memory, values).encode())
            for batch in iter_keys(
                target,
                spec,
                stats,
                ttl=ttl,
                memory=memory,
                values=values,
                reveal=reveal,
                reach=reach,
            ):
                if stats.memory_refused and not warned:
                    warned = True
                    output.warn(f"{stats.memory_refused}; the memory column shows n/a")
                notes.show(stats.shards)
                if as_json:
                    rows = ndjson_batch(batch.keys, batch.ttl_ms, batch.memory, batch.values)
                    if reach.replicas:
                        rows = rows.replace(b"}\n", b',"read_from":"%b"}\n' % batch.node.encode())
                    out.write(rows)
                elif plain:
                    out.write(text_keys(batch.keys))
                else:
                    out.write(_rows(batch).encode())
            out.flush()
    except BrokenPipeError:
        output.silence_stdout()  # the reader went away (`| head`): stop quietly
        return
    notes.end(stats.shards, stats.slot_map_changed)
    if not as_json:
        output.info(f"{stats.listed} keys matching '{spec.pattern}' ({_scanned(stats)})")


def _scanned(stats: Any) -> str:
    primaries = f"{stats.nodes} primar{'y' if stats.nodes == 1 else 'ies'}"
    replicas = sum(1 for s in stats.shards if s.role == "replica")
    if not replicas:
        return f"{primaries} scanned"
    return f"{stats.nodes} shard{'s' if stats.nodes != 1 else ''} scanned, {replicas} on a replica"


def _header(ttl: bool, memory: bool, values: bool) -> str:
    cols = ["key"] + (["ttl"] if ttl else []) + (["memory"] if memory else [])
    cols += ["type", "length", "value"] if values else []
    return "\t".join(cols) + "\n"


def _rows(batch: Any) -> str:
    import json

    from closeup_ops.ops.keyspace.encode import display, ttl_text

    lines = []
    for i, key in enumerate(batch.keys):
        cells = [display(key)]
        if batch.ttl_ms is not None:
            cells.append(ttl_text(batch.ttl_ms[i]))
        if batch.memory is not None:
            mem = batch.memory[i]
            cells.append("n/a" if mem is None else str(mem))
        if batch.values is not None:
            v = batch.values[i]
            value = v["value"]
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            shown = display(shown.encode("utf-8", "surrogateescape"))
            cells += [v["type"], "-" if v["length"] is None else str(v["length"]), shown]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _summary(target: Any, spec: Any, separator: str, depth: int, top: int, reach: Any) -> None:
    from closeup_ops.ops.keyspace.summary import summarize

    notes = Notes()
    with output.progress("scanning") as update:
        report = summarize(
            target,
            spec,
            separator=separator,
            depth=depth,
            top=top,
            progress=progress_fn(update, notes),
            reach=reach,
        )
    notes.end(report.shards, report.slot_map_changed)
    if report.memory_refused:
        output.warn(f"{report.memory_refused}; bytes are shown as n/a")
    output.render(report, _show_summary)


def _show_summary(report: Any) -> None:
    rows = []
    for ns in report.namespaces:
        rows.append(
            [
                ns.namespace,
                ns.keys,
                output.human_bytes(ns.total_bytes),
                "-" if ns.avg_bytes is None else f"{ns.avg_bytes:.0f} B",
                f"{ns.ttl_share * 100:.1f}%",
                ns.without_ttl,
            ]
        )
    output.table(
        ["namespace", "keys", "memory", "avg", "with TTL", "no expiry"],
        rows,
        title=f"{report.keys} keys matching '{report.pattern}' on {report.endpoint} "
        f"({_scanned(report)})",
        right=("keys", "memory", "avg", "with TTL", "no expiry"),
    )
    each = [
        [ns.namespace, ns.biggest.key, output.human_bytes(ns.biggest.bytes), _ttl(ns.biggest)]
        for ns in report.namespaces
        if ns.biggest is not None
    ]
    if each:
        output.line()
        output.table(["namespace", "its biggest key", "memory", "ttl"], each, right=("memory",))
    top = [[b.key, b.namespace, output.human_bytes(b.bytes), _ttl(b)] for b in report.biggest]
    if top:
        output.line()
        output.table(
            ["biggest keys", "namespace", "memory", "ttl"],
            top,
            title=f"the {len(top)} biggest keys (MEMORY USAGE)",
            right=("memory",),
        )
    never = report.no_expiry_namespaces
    output.line()
    if never:
        listed = ", ".join(f"{ns.namespace} ({ns.without_ttl})" for ns in never[:10])
        output.line(f"{report.without_ttl} keys have no expiry, in: {listed}")
        output.line(f"review them with: closeup-ops ttl --pattern '{never[0].pattern}'")
    else:
        output.line("every key has a TTL")


def _ttl(big: Any) -> str:
    return "-1 (no expiry)" if big.ttl_ms == -1 else f"{(big.ttl_ms + 500) // 1000}s"


def _delete(target: Any, spec: Any, yes: bool, reach: Any) -> None:
    from closeup_ops.ops.keyspace.delete import delete_keys

    if reach.replicas:
        output.warn("--delete scans and deletes on the primaries (--replicas is for reads)")
    with output.progress("deleting" if yes else "counting") as update:
        report = delete_keys(target, spec, yes=yes, progress=progress_fn(update), reach=reach)
    Notes().end([], report.slot_map_changed)
    output.render(report, _show_delete)


def _show_delete(report: Any) -> None:
    where = f"matching '{report.pattern}'" + (f" of type {report.type}" if report.type else "")
    if report.dry_run:
        output.line(
            f"dry run: {report.matched} keys {where} on {report.endpoint} would be "
            "deleted; nothing was deleted"
        )
        if report.sample:
            from closeup_ops.ops.keyspace.encode import display

            output.line("sample:")
            for key in report.sample:
                output.line("  " + display(key.encode()))
        if report.matched:
            output.line("rerun with --yes to UNLINK them")
        return
    output.line(
        f"deleted {report.deleted} keys {where} on {report.endpoint} "
        f"(UNLINK; {report.matched} matched)"
    )
