"""`closeup-ops sg allow|revoke|show`: the cache's security group inbound rules."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import UsageError
from closeup_ops.options import AWS_CMD, with_settings
from closeup_ops.settings import Settings

app = typer.Typer(
    name="sg",
    help="Allow, revoke and show access to the cache through its security group.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

FromSg = Annotated[
    Optional[str],
    typer.Option("--from-sg", help="Source security group (sg-...), e.g. the app's.", metavar="SG"),
]
Cidr = Annotated[
    Optional[str],
    typer.Option("--cidr", help="Source network, e.g. 10.0.1.0/24 (never 0.0.0.0/0 or ::/0)."),
]
GroupId = Annotated[
    Optional[str],
    typer.Option(
        "--group-id",
        help="The cache's security group to change (needed when it has several).",
        metavar="SG",
    ),
]
Port = Annotated[
    Optional[int],
    typer.Option(
        "--port",
        help="Port (default: the cache's; 6379 and 6380 for serverless).",
        min=1,
        max=65535,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Ask EC2 whether it would succeed (DryRun); change nothing."),
]


def _target(
    settings: Settings, group_id: str | None, port: int | None, need_all_groups: bool = False
) -> tuple[Any, Any, list[str], list[int]]:
    """(cache or None, ec2 client, group ids, ports). The cache is looked up unless
    --group-id and --port say everything."""
    from closeup_ops.connect.aws import aws_client, aws_session, find_cache
    from closeup_ops.endpoint import parse
    from closeup_ops.ops.aws import security_groups as ops

    session = aws_session(settings)
    cache = None
    known = bool(settings.cache) or parse(settings.host).aws
    if group_id is None or (port is None and known):
        cache = find_cache(settings, aws_client(settings, "elasticache", session))
    ec2 = aws_client(settings, "ec2", session)
    ports = ops.cache_ports(cache, port)
    if need_all_groups and group_id is None:
        groups = list(cache.security_group_ids)
        if not groups:
            ops.choose_group(cache, None)  # raises with the hint
        return cache, ec2, groups, ports
    return cache, ec2, [ops.choose_group(cache, group_id)], ports


def _change(
    action: str,
    settings: Settings,
    source_args: tuple[str | None, str | None],
    group_id: str | None,
    port: int | None,
    dry_run: bool,
    description: str | None = None,
) -> None:
    from closeup_ops import audit, errors
    from closeup_ops.ops.aws import security_groups as ops

    source = ops.parse_source(*source_args)  # refuses 0.0.0.0/0 before any AWS call
    if description is not None and not description.strip():
        raise UsageError("--description is empty", "give a text or leave it out")
    if description is not None:
        from closeup_ops.ops.aws.security_groups import check_description

        check_description(description)
    cache, ec2, groups, ports = _target(settings, group_id, port)
    details = {"source": str(source), "ports": ports, "cache": cache.name if cache else None}
    try:
        if action == "allow":
            text = description or ops.default_description()
            change = ops.allow(ec2, groups[0], source, ports, text, dry_run)
        else:
            change = ops.revoke(ec2, groups[0], source, ports, dry_run)
    except Exception as exc:
        if not dry_run:
            audit.record(
                f"sg {action}", groups[0], f"error: {errors.classify(exc).line()}", **details
            )
        raise
    if not dry_run:
        result = ", ".join(f"{p.port}: {p.status}" for p in change.ports)
        audit.record(f"sg {action}", groups[0], result, **details)
    for p in change.ports:
        if p.note:
            output.warn(f"port {p.port}: {p.note}")
    output.render(change, _show_change)


@app.command("allow")
@with_settings(AWS_CMD)
def allow(
    settings: Settings,
    from_sg: FromSg = None,
    cidr: Cidr = None,
    group_id: GroupId = None,
    port: Port = None,
    description: Annotated[
        Optional[str],
        typer.Option(
            "--description",
            help="Rule description (default 'closeup-ops: <user>@<host> <UTC date>').",
        ),
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Allow a security group or CIDR to reach the cache's port(s); idempotent."""
    _change("allow", settings, (from_sg, cidr), group_id, port, dry_run, description)


@app.command("revoke")
@with_settings(AWS_CMD)
def revoke(
    settings: Settings,
    from_sg: FromSg = None,
    cidr: Cidr = None,
    group_id: GroupId = None,
    port: Port = None,
    dry_run: DryRun = False,
) -> None:
    """Remove exactly the rule `sg allow` adds (that source, tcp, the cache's port(s))."""
    _change("revoke", settings, (from_sg, cidr), group_id, port, dry_run)


@app.command("show")
@with_settings(AWS_CMD)
def show(settings: Settings, group_id: GroupId = None, port: Port = None) -> None:
    """Inbound rules of the cache's security group(s) that cover its port(s)."""
    from closeup_ops.ops.aws import security_groups as ops

    cache, ec2, groups, ports = _target(settings, group_id, port, need_all_groups=True)
    rules = ops.show(ec2, groups, ports)
    output.render(
        {"cache": cache.name if cache else None, "groups": groups, "ports": ports, "rules": rules},
        _show_rules,
    )


def _show_change(change) -> None:
    verb = "dry run: " if change.dry_run else ""
    for p in change.ports:
        rule = f" ({p.rule_id})" if p.rule_id else ""
        output.line(f"{verb}{change.group_id} tcp {p.port} from {change.source}: {p.status}{rule}")


def _show_rules(doc) -> None:
    ports = ",".join(str(p) for p in doc["ports"])
    title = f"inbound rules on {', '.join(doc['groups'])} covering port {ports}"
    if not doc["rules"]:
        output.line(f"{title}: none (nothing can reach the cache)")
        return
    rows = []
    for r in doc["rules"]:
        span = (
            "all"
            if r.protocol == "-1"
            else (str(r.from_port) if r.from_port == r.to_port else f"{r.from_port}-{r.to_port}")
        )
        rows.append(
            [r.group_id, r.rule_id or "-", r.protocol, span, r.source, r.description or "-"]
        )
    output.table(["group", "rule", "protocol", "ports", "source", "description"], rows, title=title)
