"""`doctor`'s AWS checks (the guide's deployment checklist): the cache is found and
available; its security groups let this client in on the port; automatic backups are kept;
CloudWatch alarms watch it.

They run only when the cache can be named: --cache / ELASTICACHE_CACHE, or REDIS_HOST (or
REDIS_TLS_SERVER_NAME behind a tunnel) being an ElastiCache endpoint. Otherwise, or without
AWS credentials, they are "skip" with the reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

from closeup_ops.endpoint import parse as parse_endpoint
from closeup_ops.ops.aws.lookup import (
    REPLICATION_GROUP,
    SERVERLESS,
    CacheFacts,
    lookup,
)
from closeup_ops.ops.doctor.net import FAIL, OK, SKIP, WARN, Check, explain
from closeup_ops.ops.doctor.sg_rules import client_groups, matching_rule, prefix_list_reader
from closeup_ops.settings import Settings

AWS_NAMES = ("aws-cache", "security-group", "backups", "alarms")
BUSY = {
    "creating",
    "modifying",
    "snapshotting",
    "rebooting cache cluster nodes",
    "rebooting",
    "updating",
    "backing-up",
}


def _skip_all(reason: str) -> list[Check]:
    """The first AWS check carries the reason; the others point at it."""
    first, *rest = AWS_NAMES
    return [Check(first, SKIP, reason)] + [Check(n, SKIP, f"skipped: see {first}") for n in rest]


def cache_hosts(settings: Settings) -> list[str]:
    """The ElastiCache endpoint names among REDIS_HOST and REDIS_TLS_SERVER_NAME."""
    return [
        h
        for h in dict.fromkeys([settings.host, settings.tls_server_name])
        if h and parse_endpoint(h).aws
    ]


def _no_credentials(exc: BaseException) -> bool:
    return type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError")


def aws_checks(
    settings: Settings,
    aws: Callable[[str], Any] | None,
    client_sgs: list[str],
    client_ip: str | None,
) -> Iterator[Check]:
    if aws is None:
        yield from _skip_all("skipped: --no-aws")
        return
    hosts = cache_hosts(settings)
    if not settings.cache and not hosts:
        yield from _skip_all(
            "skipped: no cache to look up (set --cache or ELASTICACHE_CACHE, "
            "or REDIS_HOST to the ElastiCache endpoint)"
        )
        return
    try:
        cache = lookup(aws("elasticache"), settings)
    except Exception as exc:
        if _no_credentials(exc):
            yield from _skip_all(
                "skipped: no AWS credentials (set AWS_PROFILE or use an "
                "instance role to run the AWS checks)"
            )
            return
        yield Check("aws-cache", FAIL, *explain(exc))
        yield from _skip_all("")[1:]
        return
    check = check_cache(cache)
    yield check
    if check.status == FAIL:
        yield from _skip_all("")[1:]
        return
    later: list[tuple[str, Callable[[], Check]]] = [
        (
            "security-group",
            lambda: check_security_groups(cache, aws("ec2"), settings, client_sgs, client_ip),
        ),
        ("backups", lambda: check_backups(cache)),
        ("alarms", lambda: check_alarms(cache, aws("cloudwatch"))),
    ]
    for name, run in later:
        try:
            yield run()
        except Exception as exc:  # one AWS call failing does not hide the other checks
            yield Check(name, FAIL, *explain(exc))


def check_cache(cache: CacheFacts) -> Check:
    evidence = f"{cache.kind} {cache.name} ({cache.engine or '?'}) is {cache.status}"
    if cache.status == "available":
        return Check("aws-cache", OK, evidence)
    if cache.status in BUSY:
        return Check("aws-cache", WARN, evidence, "wait until it is available")
    return Check(
        "aws-cache",
        FAIL,
        evidence,
        "see the cache's events in the ElastiCache console; it must be available",
    )


# --- security groups ------------------------------------------------------------------


def check_security_groups(
    cache: CacheFacts, ec2: Any, settings: Settings, client_sgs: list[str], client_ip: str | None
) -> Check:
    if cache.security_group_ids is None:
        return Check(
            "security-group",
            WARN,
            f"AWS did not report the security groups of {cache.name}",
            "check them with `closeup-ops sg show`",
        )
    if not cache.security_group_ids:
        return Check(
            "security-group",
            WARN,
            f"{cache.name} has no VPC security groups",
            "attach one that allows the app's security group on the port",
        )
    port = cache.port or settings.port
    groups = ec2.describe_security_groups(GroupIds=cache.security_group_ids)["SecurityGroups"]
    sgs = list(dict.fromkeys(client_sgs + client_groups(ec2, client_ip)))
    listed = ", ".join(cache.security_group_ids)
    prefix_lists = prefix_list_reader(ec2)
    rule = matching_rule(groups, port, sgs, client_ip, prefix_lists)
    if rule:
        # a serverless cache's reader endpoint listens on its own port (6380; Memcached
        # 11212): reads sent there fail if only the main port is open
        others = [p for p in cache.ports if p != port] if cache.kind == SERVERLESS else []
        closed = [p for p in others if not matching_rule(groups, p, sgs, client_ip, prefix_lists)]
        if closed:
            text = ", ".join(f"tcp/{p}" for p in closed)
            return Check(
                "security-group",
                WARN,
                f"{rule}, but nothing in {listed} allows it on {text} (the reader endpoint)",
                _allow_fix(cache, sgs, client_ip, closed[0]),
            )
        return Check("security-group", OK, rule)
    loopback = client_ip is not None and ipaddress.ip_address(client_ip).is_loopback
    if loopback and not client_sgs:
        return Check(
            "security-group",
            WARN,
            f"this client reaches the cache over loopback "
            f"(a tunnel or local server), so the source {listed} sees is unknown",
            "pass --client-sg (the bastion's or app's group) or --client-ip to check",
        )
    who = " / ".join(sgs + ([client_ip] if client_ip else [])) or "this client"
    return Check(
        "security-group",
        FAIL,
        f"no inbound rule in {listed} allows {who} on tcp/{port}",
        _allow_fix(cache, sgs, client_ip, port),
    )


def _allow_fix(cache: CacheFacts, sgs: list[str], client_ip: str | None, port: int) -> str:
    if sgs:
        return f"closeup-ops sg allow --from-sg {sgs[0]} --cache {cache.name} --port {port}"
    if client_ip:
        return f"closeup-ops sg allow --cidr {client_ip}/32 --cache {cache.name} --port {port}"
    return f"closeup-ops sg allow --from-sg <app-sg> --cache {cache.name}"


# --- backups and alarms ---------------------------------------------------------------


def _retention_fix(cache: CacheFacts) -> str:
    flag = "--snapshot-retention-limit 7"
    if cache.kind == SERVERLESS:
        return (
            f"aws elasticache modify-serverless-cache --serverless-cache-name {cache.name} {flag}"
        )
    if cache.kind == REPLICATION_GROUP:
        return (
            f"aws elasticache modify-replication-group --replication-group-id {cache.name} "
            f"{flag} --apply-immediately"
        )
    return (
        f"aws elasticache modify-cache-cluster --cache-cluster-id {cache.name} {flag} "
        "--apply-immediately"
    )


def check_backups(cache: CacheFacts) -> Check:
    days = cache.snapshot_retention
    if days is None:
        return Check("backups", SKIP, f"AWS did not report the snapshot retention of {cache.name}")
    if days <= 0:
        return Check(
            "backups",
            FAIL,
            f"automatic backups are off for {cache.name} (snapshot retention 0 days)",
            _retention_fix(cache) + " (the guide recommends 7 to 35 days)",
        )
    window = f", window {cache.snapshot_window}" if cache.snapshot_window else ""
    return Check("backups", OK, f"automatic snapshots kept {days} days{window}")


def cache_alarms(cw: Any, cache: CacheFacts) -> list[dict[str, Any]]:
    """Metric alarms on AWS/ElastiCache metrics of this cache (or its member clusters)."""
    dims = set(cache.metric_dimensions())
    found = []
    for page in cw.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            pairs = {(d["Name"], d["Value"]) for d in alarm.get("Dimensions") or []}
            for metric in alarm.get("Metrics") or []:  # metric-math alarms
                stat = (metric.get("MetricStat") or {}).get("Metric") or {}
                pairs |= {(d["Name"], d["Value"]) for d in stat.get("Dimensions") or []}
            if pairs & dims:
                found.append(alarm)
    return found


def _watched(cache: CacheFacts) -> tuple[str, list[str]]:
    """(dimension, values) whose metrics must each be watched: every member cluster of a
    replication group (its metrics are per member), the cluster, or the serverless cache."""
    if cache.kind == SERVERLESS:
        return "clusterId", [cache.name]
    if cache.kind == REPLICATION_GROUP and cache.member_clusters:
        return "CacheClusterId", list(cache.member_clusters)
    return "CacheClusterId", [cache.name]


def suggested_alarm(cache: CacheFacts, values: list[str]) -> str:
    """put-metric-alarm for every member (a loop), with a metric whose threshold means it:
    Valkey/Redis EngineCPUUtilization (the engine thread, %; host CPUUtilization averages all
    cores) Average > 70; Memcached CPUUtilization; serverless ThrottledCmds Sum > 0 (ECPUs
    are a count whose ceiling is the cache's own limit, not a percentage)."""
    dim, _ = _watched(cache)
    if cache.kind == SERVERLESS:
        metric, stat, threshold, suffix = "ThrottledCmds", "Sum", "0", "throttled"
    elif str(cache.engine or "").lower() == "memcached":
        metric, stat, threshold, suffix = "CPUUtilization", "Average", "70", "cpu"
    else:
        metric, stat, threshold, suffix = "EngineCPUUtilization", "Average", "70", "engine-cpu"
    one = (
        "aws cloudwatch put-metric-alarm --namespace AWS/ElastiCache "
        f"--metric-name {metric} --dimensions Name={dim},Value={{v}} --statistic {stat} "
        f"--period 300 --evaluation-periods 2 --threshold {threshold} "
        f"--comparison-operator GreaterThanThreshold --alarm-name {{v}}-{suffix}"
    )
    if len(values) == 1:
        command = one.format(v=values[0])
    else:
        command = f"for c in {' '.join(values)}; do {one.format(v='$c')}; done"
    return command + " (likewise Evictions and CurrConnections)"


def check_alarms(cache: CacheFacts, cw: Any) -> Check:
    alarms = cache_alarms(cw, cache)
    dim, values = _watched(cache)
    if not alarms:
        return Check(
            "alarms",
            FAIL,
            f"no CloudWatch alarm watches {cache.name}",
            suggested_alarm(cache, values),
        )
    watched = set()
    for alarm in alarms:
        pairs = {(d["Name"], d["Value"]) for d in alarm.get("Dimensions") or []}
        for metric in alarm.get("Metrics") or []:
            stat = (metric.get("MetricStat") or {}).get("Metric") or {}
            pairs |= {(d["Name"], d["Value"]) for d in stat.get("Dimensions") or []}
        watched |= {v for n, v in pairs if n == dim}
    names = sorted({a.get("MetricName") or a["AlarmName"] for a in alarms})
    firing = [a["AlarmName"] for a in alarms if a.get("StateValue") == "ALARM"]
    evidence = f"{len(alarms)} alarm(s) on {', '.join(names)}"
    unwatched = [v for v in values if v not in watched]
    if unwatched:
        return Check(
            "alarms",
            WARN,
            f"{evidence}, but {len(unwatched)} of {len(values)} members have none: "
            f"{', '.join(unwatched)}",
            suggested_alarm(cache, unwatched),
        )
    if firing:
        return Check(
            "alarms",
            WARN,
            f"{evidence}; in ALARM: {', '.join(firing)}",
            "look at the alarm's metric (`closeup-ops stats`)",
        )
    return Check("alarms", OK, evidence)
