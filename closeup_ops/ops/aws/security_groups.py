"""Inbound rules on the cache's security group: allow, revoke, show.

Idempotent (an existing rule is success), a description on every rule, one rule per cache
port (6379, plus 6380 for a serverless cache's reader endpoint), never the whole internet.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import Any, NoReturn

from closeup_ops import audit
from closeup_ops.connect.aws import error_code, pages
from closeup_ops.connect.cache_ref import SERVERLESS, CacheRef, default_ports, is_memcached
from closeup_ops.endpoint import DEFAULT_PORT, SERVERLESS_READER_PORT
from closeup_ops.errors import AwsResourceError, UsageError, classify

ADDED, ALREADY, WOULD_ADD = "added", "already allowed", "would add"
REMOVED, ABSENT, WOULD_REMOVE = "removed", "not present", "would remove"


@dataclass(frozen=True)
class Source:
    kind: str  # "sg" | "ipv4" | "ipv6"
    value: str

    def __str__(self) -> str:
        return self.value


@dataclass
class PortResult:
    port: int
    status: str
    rule_id: str | None = None
    note: str | None = None


@dataclass
class RuleChange:
    action: str  # allow | revoke
    group_id: str
    source: str
    description: str | None
    dry_run: bool
    ports: list[PortResult] = field(default_factory=list)


@dataclass
class RuleView:
    group_id: str
    rule_id: str | None
    protocol: str
    from_port: int | None
    to_port: int | None
    source: str
    description: str | None
    covers: list[int]


def parse_source(from_sg: str | None, cidr: str | None) -> Source:
    if bool(from_sg) == bool(cidr):
        raise UsageError(
            "give exactly one of --from-sg SG or --cidr CIDR",
            "e.g. --from-sg sg-0123456789abcdef0 or --cidr 10.0.1.0/24",
        )
    if from_sg:
        if not from_sg.startswith("sg-"):
            raise UsageError(
                f"--from-sg {from_sg} is not a security group id",
                "use the sg-... id of the app's security group",
            )
        return Source("sg", from_sg)
    try:
        net = ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        raise UsageError(
            f"--cidr {cidr} is not valid", "use an IPv4 or IPv6 network such as 10.0.1.0/24"
        ) from None
    if net.prefixlen == 0:
        raise UsageError(
            f"refusing --cidr {cidr}: it opens the cache to the whole internet",
            "allow the app's security group (--from-sg) or its VPC/subnet CIDR",
        )
    return Source("ipv4" if net.version == 4 else "ipv6", str(net))


# EC2's rule descriptions (service model, IpRange / UserIdGroupPair / PrefixListId
# Description): up to 255 characters from a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=;{}!$*
# (IpRange also allows &; the rule for every kind is the intersection).
DESCRIPTION_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-:/()#,@[]+=;{}!$*"
)
DESCRIPTION_MAX = 255


def bad_description_chars(text: str) -> str:
    return "".join(sorted({c for c in text if c not in DESCRIPTION_CHARS}))


def check_description(text: str) -> str:
    """A --description EC2 will take, else exit 2 before anything is sent."""
    bad = bad_description_chars(text)
    if bad or len(text) > DESCRIPTION_MAX:
        what = f"characters {bad!r}" if bad else f"{len(text)} characters"
        raise UsageError(
            f"--description has {what} that EC2 refuses",
            f"use at most {DESCRIPTION_MAX} of a-z A-Z 0-9 space ._-:/()#,@[]+=;{{}}!$*",
        )
    return text


def default_description() -> str:
    """'closeup-ops: user@host date', with whatever EC2 would refuse in a user or host name
    (a DOMAIN\\user, an apostrophe, non-ASCII) replaced by '_'."""
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    actor = "".join(c if c in DESCRIPTION_CHARS else "_" for c in audit.actor())
    return f"closeup-ops: {actor} {day}"[:DESCRIPTION_MAX]


def cache_ports(cache: CacheRef | None, port: int | None = None) -> list[int]:
    """--port, else the cache's ports (a serverless Valkey/Redis cache always gets 6379 and
    6380; serverless Memcached has its own, 11211 and 11212)."""
    if port is not None:
        return [port]
    if cache is None:
        return [DEFAULT_PORT]
    if cache.kind == SERVERLESS and not is_memcached(cache.engine):
        return sorted(set(cache.ports) | {DEFAULT_PORT, SERVERLESS_READER_PORT})
    return sorted(set(cache.ports)) or default_ports(cache.kind, cache.engine)


def choose_group(cache: CacheRef | None, group_id: str | None) -> str:
    if group_id:
        if not group_id.startswith("sg-"):
            raise UsageError(
                f"--group-id {group_id} is not a security group id", "use the sg-... id"
            )
        return group_id
    assert cache is not None
    groups = cache.security_group_ids
    if not groups:
        raise AwsResourceError(
            f"AWS reports no VPC security group for {cache.kind} {cache.name}",
            "pass the group with --group-id sg-...",
        )
    if len(groups) > 1:
        raise UsageError(
            f"{cache.name} has {len(groups)} security groups: {', '.join(groups)}",
            "pick one with --group-id",
        )
    return groups[0]


def permission(source: Source, port: int, description: str | None) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    entry: dict[str, Any] = {}
    if description:
        entry["Description"] = description
    if source.kind == "sg":
        perm["UserIdGroupPairs"] = [{"GroupId": source.value, **entry}]
    elif source.kind == "ipv4":
        perm["IpRanges"] = [{"CidrIp": source.value, **entry}]
    else:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source.value, **entry}]
    return perm


def inbound_rules(ec2: Any, group_ids: list[str]) -> list[dict[str, Any]]:
    rules = pages(
        ec2.describe_security_group_rules,
        "SecurityGroupRules",
        token="NextToken",
        Filters=[{"Name": "group-id", "Values": list(group_ids)}],
    )
    return [r for r in rules if not r.get("IsEgress")]


def rule_source(rule: dict[str, Any]) -> str:
    ref = rule.get("ReferencedGroupInfo") or {}
    return (
        rule.get("CidrIpv4")
        or rule.get("CidrIpv6")
        or ref.get("GroupId")
        or rule.get("PrefixListId")
        or "?"
    )


def covers_port(rule: dict[str, Any], port: int) -> bool:
    """Whether an inbound rule lets TCP in on `port`, as EC2 reads it. Works on both shapes
    AWS answers with (an IpPermission of DescribeSecurityGroups, a SecurityGroupRule of
    DescribeSecurityGroupRules): IpProtocol "-1" is every protocol and port; "tcp" or its
    number "6" is FromPort..ToPort (EC2 requires both for TCP; -1 is an ICMP wildcard, never
    a TCP one); any other protocol lets no TCP in."""
    protocol = str(rule.get("IpProtocol")).lower()
    if protocol == "-1":
        return True
    if protocol not in ("tcp", "6"):
        return False
    low, high = rule.get("FromPort"), rule.get("ToPort")
    return low is not None and high is not None and int(low) <= port <= int(high)


def _same_source(rule: dict[str, Any], source: Source) -> bool:
    found = rule_source(rule)
    if source.kind == "sg":
        return found == source.value
    try:
        return ipaddress.ip_network(found, strict=False) == ipaddress.ip_network(source.value)
    except ValueError:
        return False


def _exact(rule: dict[str, Any], port: int) -> bool:
    return (
        str(rule.get("IpProtocol")).lower() in ("tcp", "6")
        and rule.get("FromPort") == port
        and rule.get("ToPort") == port
    )


def allow(
    ec2: Any,
    group_id: str,
    source: Source,
    ports: list[int],
    description: str,
    dry_run: bool = False,
) -> RuleChange:
    change = RuleChange("allow", group_id, str(source), description, dry_run)
    existing = [r for r in inbound_rules(ec2, [group_id]) if _same_source(r, source)]
    for port in ports:
        have = next((r for r in existing if covers_port(r, port)), None)
        if have is not None:
            change.ports.append(PortResult(port, ALREADY, have.get("SecurityGroupRuleId")))
            continue
        try:
            got = ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[permission(source, port, description)],
                DryRun=dry_run,
            )
        except Exception as exc:
            code = error_code(exc)
            if code == "DryRunOperation":
                change.ports.append(PortResult(port, WOULD_ADD))
                continue
            if code == "InvalidPermission.Duplicate":
                change.ports.append(PortResult(port, ALREADY))
                continue
            _fail_after(change, exc)
        rules = got.get("SecurityGroupRules") or [{}]
        change.ports.append(PortResult(port, ADDED, rules[0].get("SecurityGroupRuleId")))
    return change


def revoke(
    ec2: Any, group_id: str, source: Source, ports: list[int], dry_run: bool = False
) -> RuleChange:
    """Remove exactly the rule `allow` would add (tcp, that port, that source), by rule id."""
    change = RuleChange("revoke", group_id, str(source), None, dry_run)
    rules = [r for r in inbound_rules(ec2, [group_id]) if _same_source(r, source)]
    for port in ports:
        exact = [r for r in rules if _exact(r, port)]
        if not exact:
            wider = next((r for r in rules if covers_port(r, port)), None)
            note = (
                (
                    f"still allowed by rule {wider.get('SecurityGroupRuleId')} "
                    f"({_ports_text(wider)}), which this does not remove"
                )
                if wider
                else None
            )
            change.ports.append(PortResult(port, ABSENT, note=note))
            continue
        ids = [r["SecurityGroupRuleId"] for r in exact]
        try:
            ec2.revoke_security_group_ingress(
                GroupId=group_id, SecurityGroupRuleIds=ids, DryRun=dry_run
            )
        except Exception as exc:
            if error_code(exc) == "DryRunOperation":
                change.ports.append(PortResult(port, WOULD_REMOVE, ",".join(ids)))
                continue
            _fail_after(change, exc)
        change.ports.append(PortResult(port, REMOVED, ",".join(ids)))
    return change


def _fail_after(change: RuleChange, exc: Exception) -> NoReturn:
    """Re-raise a port's failure; when an earlier port of the same run was already changed,
    the error (and so the audit line) says so, with the rule id to undo it by."""
    done = [
        f"port {p.port} {p.status}" + (f" ({p.rule_id})" if p.rule_id else "")
        for p in change.ports
        if p.status in (ADDED, REMOVED)
    ]
    if not done:
        raise exc
    err = classify(exc)
    raise type(err)(f"{err.message}; before that: {', '.join(done)}", err.hint) from exc


def _ports_text(rule: dict[str, Any]) -> str:
    if str(rule.get("IpProtocol")) == "-1":
        return "all traffic"
    low, high = rule.get("FromPort"), rule.get("ToPort")
    return f"tcp {low}" if low == high else f"tcp {low}-{high}"


def show(ec2: Any, group_ids: list[str], ports: list[int]) -> list[RuleView]:
    """Inbound rules of these groups that cover any of `ports`."""
    views = []
    for rule in inbound_rules(ec2, group_ids):
        covers = [p for p in ports if covers_port(rule, p)]
        if covers:
            views.append(
                RuleView(
                    group_id=rule.get("GroupId", "?"),
                    rule_id=rule.get("SecurityGroupRuleId"),
                    protocol=str(rule.get("IpProtocol")),
                    from_port=rule.get("FromPort"),
                    to_port=rule.get("ToPort"),
                    source=rule_source(rule),
                    description=rule.get("Description"),
                    covers=covers,
                )
            )
    return views
