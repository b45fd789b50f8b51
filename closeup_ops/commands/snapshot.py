"""`closeup-ops snapshot create|list|restore|delete`: the right API for each kind of cache."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import UsageError
from closeup_ops.options import AWS_CMD, with_settings
from closeup_ops.settings import Settings

app = typer.Typer(
    name="snapshot",
    help="Create, list, restore (to a NEW cache) and delete snapshots.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

Wait = Annotated[
    bool,
    typer.Option(
        "--wait", help="Wait until it is available, with a progress spinner (bounded by --timeout)."
    ),
]


Kind = Annotated[
    Optional[bool],
    typer.Option(
        "--serverless/--node",
        help="Which snapshot, when a serverless and a node-based one share the name.",
    ),
]


def _kind(serverless: bool | None) -> str | None:
    return None if serverless is None else ("serverless" if serverless else "node")


def _timeout(value: float) -> float:
    if not 1 <= value <= 24 * 3600:
        raise UsageError(f"--timeout {value:g} is out of range", "use 1 to 86400 seconds")
    return value


def _audited(command: str, target: str, call: Any, **details: Any) -> Any:
    """Run one mutating AWS call and write its one audit line, success or failure; an
    answer that says nothing changed (already there) says so in the line."""
    from closeup_ops import audit, errors

    try:
        result = call()
    except Exception as exc:
        audit.record(command, target, f"error: {errors.classify(exc).line()}", **details)
        raise
    said = getattr(result, "audit_result", None)
    audit.record(command, target, said() if callable(said) else "ok", **details)
    return result


@app.command("create")
@with_settings(AWS_CMD)
def create(
    settings: Settings,
    name: Annotated[
        Optional[str],
        typer.Option("--name", help="Snapshot name (default <cache>-<UTC yyyymmdd-HHMM>)."),
    ] = None,
    wait: Wait = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds --wait may take.", metavar="S")
    ] = 1800.0,
) -> None:
    """Snapshot the cache (--cache, or the one REDIS_HOST points at). A snapshot of that
    name already made of the same cache, or being made, is success: nothing is created."""
    _timeout(timeout)
    from closeup_ops.connect.aws import aws_client, find_cache
    from closeup_ops.ops.aws import snapshots as ops
    from closeup_ops.ops.aws.snapshot_changes import ensure_snapshot

    client = aws_client(settings, "elasticache")
    cache = find_cache(settings, client)
    name = name or ops.default_name(cache.name)
    done = _audited(
        "snapshot create",
        cache.name,
        lambda: ensure_snapshot(client, cache, name),
        snapshot=name,
        kind=cache.kind,
    )
    snap = done.snapshot
    what = f"snapshot {name} of {cache.kind} {cache.name}"
    # the creation time: an old snapshot of that name is not a fresh one of today's data
    output.info(
        f"{what} {done.already}, created {snap.created or '?'}: nothing created"
        if done.already
        else f"{what}: {snap.status}"
    )
    if wait:
        with output.progress(f"snapshot {name}") as update:
            snap = ops.wait_snapshot(client, snap, timeout, update)
    output.render(snap, _show_one)


@app.command("list")
@with_settings(AWS_CMD)
def list_(settings: Settings) -> None:
    """Snapshots of serverless and node-based caches (only the cache's own with --cache)."""
    from closeup_ops.connect.aws import aws_client, find_cache
    from closeup_ops.ops.aws.snapshots import list_snapshots

    client = aws_client(settings, "elasticache")
    cache = find_cache(settings, client) if settings.cache else None
    output.render(list_snapshots(client, cache), _show_list)


def _ids(value: str | None, flag: str) -> list[str] | None:
    if value is None:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids:
        raise UsageError(f"{flag} is empty", "give comma-separated ids")
    return ids


@app.command("restore")
@with_settings(AWS_CMD)
def restore(
    settings: Settings,
    snapshot: Annotated[str, typer.Argument(help="Snapshot name.")],
    target: Annotated[str, typer.Option("--target", help="Name of the NEW cache.")],
    node_type: Annotated[
        Optional[str], typer.Option(help="Node type (default: the source's).")
    ] = None,
    engine_version: Annotated[
        Optional[str], typer.Option(help="Engine version (serverless: major version).")
    ] = None,
    subnet_group: Annotated[
        Optional[str], typer.Option(help="Cache subnet group (node-based).")
    ] = None,
    subnet_ids: Annotated[
        Optional[str], typer.Option(help="Comma-separated subnet ids (serverless).")
    ] = None,
    security_group_ids: Annotated[
        Optional[str], typer.Option(help="Comma-separated VPC security group ids.")
    ] = None,
    tls: Annotated[
        Optional[bool],
        typer.Option("--tls/--no-tls", help="In-transit encryption (default: the source's)."),
    ] = None,
    wait: Wait = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds --wait may take.", metavar="S")
    ] = 3600.0,
    serverless: Kind = None,
) -> None:
    """Create a NEW cache from SNAPSHOT, copying the source's network and engine settings."""
    _timeout(timeout)
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws import restore as ops
    from closeup_ops.ops.aws.snapshots import get_snapshot

    opts = ops.RestoreOptions(
        node_type=node_type,
        engine_version=engine_version,
        subnet_group=subnet_group,
        subnet_ids=_ids(subnet_ids, "--subnet-ids"),
        security_group_ids=_ids(security_group_ids, "--security-group-ids"),
        tls=tls,
    )
    client = aws_client(settings, "elasticache")
    snap = get_snapshot(client, snapshot, _kind(serverless))
    if target == snap.cache:
        raise UsageError(f"--target {target} is the snapshot's own cache", "restore to a NEW name")
    ops.check_target_free(client, target)  # refused (exit 5) before anything is created
    result = _audited(
        "snapshot restore",
        target,
        lambda: ops.restore_snapshot(client, snap, target, opts, check_target=False),
        snapshot=snap.name,
        kind=snap.kind,
    )
    output.info(
        f"creating {result.kind} {target} from snapshot {snap.name}"
        + (
            f" (settings copied from {result.copied_from})"
            if result.copied_from
            else " (source cache is gone: settings from the snapshot and flags)"
        )
    )
    for text in result.warnings:
        output.warn(text)
    if wait:
        with output.progress(f"restore {target}") as update:
            cache = ops.wait_cache(client, target, timeout, update)
        result.status = cache.status
        result.endpoints = cache.endpoints
    output.render(result, _show_restore)


@app.command("delete")
@with_settings(AWS_CMD)
def delete(
    settings: Settings,
    snapshot: Annotated[str, typer.Argument(help="Snapshot name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete it.")] = False,
    missing_ok: Annotated[
        bool,
        typer.Option(
            "--missing-ok",
            help="A snapshot that does not exist is success, not exit 5 (a re-run runbook).",
        ),
    ] = False,
    serverless: Kind = None,
) -> None:
    """Delete SNAPSHOT (needs --yes; without it, says what would be deleted). One already
    being deleted is success; one that does not exist is exit 5 unless --missing-ok."""
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws import snapshots as ops
    from closeup_ops.ops.aws.snapshot_changes import DELETING, remove_snapshot

    client = aws_client(settings, "elasticache")
    snap = ops.find_snapshot(client, snapshot, _kind(serverless))
    if snap is None:
        _missing(snapshot, _kind(serverless), yes, missing_ok)
        return
    what = (
        f"{snap.kind} snapshot {snap.name} of {snap.cache or '?'} "
        f"(status {snap.status}, created {snap.created or '?'})"
    )
    if not yes and snap.status.lower() != DELETING:
        output.info(f"would delete {what}")
        raise UsageError(f"not deleting {snap.name} without --yes", "rerun with --yes to delete it")
    if yes:
        done = _audited(
            "snapshot delete",
            snap.name,
            lambda: remove_snapshot(client, snap),
            kind=snap.kind,
            cache=snap.cache,
        )
    else:  # already being deleted: nothing is sent, so nothing to confirm
        done = remove_snapshot(client, snap)
    output.info(f"{what}: {done.already}, nothing changed" if done.already else f"deleting {what}")
    output.render(done.snapshot, _show_one)


def _missing(name: str, kind: str | None, yes: bool, missing_ok: bool) -> None:
    """No snapshot called `name`. A typo must not look like a deletion: exit 5, unless the
    caller said that absent is fine (--missing-ok); the audit line then says nothing was
    there."""
    from closeup_ops import audit
    from closeup_ops.ops.aws import snapshots as ops

    if not missing_ok:
        raise ops.not_found(
            name,
            kind,
            "nothing deleted; check the name with `closeup-ops snapshot list` (a runbook "
            "step that may run again after it succeeded can pass --missing-ok)",
        )
    if yes:
        audit.record("snapshot delete", name, "ok: not found, nothing changed", kind=kind)
    output.info(f"no snapshot {name}: nothing to delete (--missing-ok)")
    output.render(ops.absent(name, kind), _show_one)


def _show_one(snap) -> None:
    output.fields_block(
        [
            ("name", snap.name),
            ("kind", snap.kind),
            ("cache", snap.cache),
            ("status", snap.status),
            ("created", snap.created or "-"),
            ("engine", " ".join(x for x in (snap.engine, snap.engine_version) if x)),
            ("arn", snap.arn),
        ]
    )


def _show_list(snaps) -> None:
    if not snaps:
        output.info("no snapshots")
        return
    output.table(
        ["name", "kind", "cache", "status", "source", "created", "engine"],
        [
            [
                s.name,
                s.kind,
                s.cache or "-",
                s.status,
                s.source or "-",
                s.created or "-",
                " ".join(x for x in (s.engine, s.engine_version) if x) or "-",
            ]
            for s in snaps
        ],
    )


def _show_restore(result) -> None:
    pairs = [
        ("target", result.target),
        ("kind", result.kind),
        ("snapshot", result.snapshot),
        ("status", result.status),
        ("copied from", result.copied_from or "-"),
    ]
    pairs += [(e["role"], f"{e['address']}:{e['port']}") for e in result.endpoints]
    output.fields_block(pairs)
