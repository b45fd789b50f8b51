"""`closeup-ops caches`: serverless caches, replication groups and cache clusters."""

from __future__ import annotations

from closeup_ops import output
from closeup_ops.options import AWS_CMD, with_settings
from closeup_ops.settings import Settings


@with_settings(AWS_CMD)
def caches(settings: Settings) -> None:
    """List the region's caches: kind, engine, status, endpoints, TLS, security groups."""
    from closeup_ops.connect.aws import aws_client
    from closeup_ops.ops.aws.caches import caches as list_all

    found = list_all(aws_client(settings, "elasticache"))
    output.render(found, _show)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _show(found) -> None:
    if not found:
        output.info("no caches in this region (check --region / AWS_REGION)")
        return
    rows = []
    for c in found:
        engine = " ".join(x for x in (c.engine, c.engine_version) if x) or "-"
        rows.append(
            [
                c.name,
                c.kind,
                engine,
                c.status or "-",
                " ".join(c.main_endpoints()) or "-",
                ",".join(str(p) for p in c.ports),
                _yes_no(c.tls),
                _yes_no(c.cluster_mode),
                ",".join(c.security_groups) or "-",
            ]
        )
    output.table(
        [
            "name",
            "kind",
            "engine",
            "status",
            "endpoints",
            "ports",
            "tls",
            "cluster",
            "security groups",
        ],
        rows,
    )
