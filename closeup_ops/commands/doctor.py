"""`closeup-ops doctor`: the guide's troubleshooting as an ordered checklist."""

from typing import Annotated, Optional

import typer

from closeup_ops import output
from closeup_ops.errors import CheckFailed
from closeup_ops.options import REDIS, with_settings
from closeup_ops.settings import Settings

MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@with_settings(REDIS)
def doctor(
    settings: Settings,
    no_aws: Annotated[
        bool,
        typer.Option(
            "--no-aws", help="Skip the AWS checks (cache status, security group, backups, alarms)."
        ),
    ] = False,
    client_sg: Annotated[
        Optional[list[str]],
        typer.Option(
            "--client-sg",
            metavar="SG",
            help="This client's security group, for "
            "the security group check (repeatable; default: the groups of the "
            "network interface that owns this host's address).",
        ),
    ] = None,
    client_ip: Annotated[
        Optional[str],
        typer.Option(
            "--client-ip",
            metavar="IP",
            help="The address the cache sees this "
            "client as (default: this host's address towards the cache).",
        ),
    ] = None,
) -> None:
    """Check settings, DNS, TCP, TLS, AUTH, PING, cluster/DB and server facts, then (with
    AWS access) the cache's status, security group rule, backups and alarms. Exit 6 when a
    check fails."""
    import ipaddress

    from closeup_ops.errors import UsageError
    from closeup_ops.ops.doctor.diagnose import diagnose

    if client_ip is not None:
        try:
            ipaddress.ip_address(client_ip)
        except ValueError:
            raise UsageError(
                f"--client-ip {client_ip} is not valid", "use an IPv4 or IPv6 address"
            ) from None
    for sg in client_sg or []:
        if not sg.startswith("sg-"):
            raise UsageError(f"--client-sg {sg} is not valid", "use a group id like sg-0abc123")

    aws = None
    if not no_aws:
        from closeup_ops.connect.aws import aws_client

        def aws(service: str):
            return aws_client(settings, service)

    live = None if output.json_mode() else _show_check
    if live:
        output.line(f"closeup-ops doctor: {settings.endpoint}")
    report = diagnose(
        settings, aws=aws, client_sgs=list(client_sg or []), client_address=client_ip, on_check=live
    )
    if output.json_mode():
        output.emit_json(report)
    else:
        c = report.counts
        output.line(f"{c['ok']} ok, {c['warn']} warn, {c['fail']} fail, {c['skip']} skip")
    if not report.passed:
        failed = [ch.name for ch in report.checks if ch.status == "fail"]
        raise CheckFailed(
            f"doctor: {len(failed)} check(s) failed ({', '.join(failed)})",
            "apply the fix shown for each failed check",
        )


def _show_check(check) -> None:
    output.line(f"  {MARK[check.status]:<4}  {check.name:<14}  {check.evidence}")
    if check.fix and check.status in ("fail", "warn"):
        output.line(f"  {'':<4}  {'':<14}  fix: {check.fix}")
