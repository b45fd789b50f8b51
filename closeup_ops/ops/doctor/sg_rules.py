"""Does a cache's security group let this client in? The inbound rules read as AWS
evaluates them: a rule covers the port (or all traffic) and names our security group, a
CIDR holding our address, or a managed prefix list holding it. Used by doctor's
security-group check (aws.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from closeup_ops.ops.aws.security_groups import covers_port

PrefixLists = Callable[[str], list[str]]  # prefix list id -> its CIDRs


def _in(ip: Any, cidr: str) -> bool:
    try:
        return ip in ipaddress.ip_network(cidr, strict=False)
    except (ValueError, TypeError):
        return False


def _source_matches(
    perm: dict[str, Any], client_sgs: list[str], ip: Any, prefix_lists: PrefixLists | None
) -> str | None:
    for pair in perm.get("UserIdGroupPairs") or []:
        if pair.get("GroupId") in client_sgs:
            return pair["GroupId"]
    if ip is None:
        return None
    for key, field in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
        for rng in perm.get(key) or []:
            if _in(ip, str(rng.get(field))):
                return rng[field]
    # a managed prefix list is access too: its entries are CIDRs
    for entry in perm.get("PrefixListIds") or []:
        pl = entry.get("PrefixListId")
        if pl and prefix_lists is not None:
            cidr = next((c for c in prefix_lists(pl) if _in(ip, c)), None)
            if cidr:
                return f"{pl} ({cidr})"
    return None


def matching_rule(
    groups: list[dict[str, Any]],
    port: int,
    client_sgs: list[str],
    client_ip: str | None,
    prefix_lists: PrefixLists | None = None,
) -> str | None:
    """'sg-1 allows sg-2 on tcp/6379' for the first inbound rule that lets us in, or None."""
    ip = ipaddress.ip_address(client_ip) if client_ip else None
    for group in groups:
        for perm in group.get("IpPermissions") or []:
            if not covers_port(perm, port):
                continue
            source = _source_matches(perm, client_sgs, ip, prefix_lists)
            if source:
                return f"{group['GroupId']} allows {source} on tcp/{port}"
    return None


def prefix_list_reader(ec2: Any) -> PrefixLists:
    """CIDRs of a managed prefix list (GetManagedPrefixListEntries), read once each."""
    seen: dict[str, list[str]] = {}

    def entries(pl: str) -> list[str]:
        if pl not in seen:
            from closeup_ops.connect.aws import pages

            got = pages(
                ec2.get_managed_prefix_list_entries, "Entries", token="NextToken", PrefixListId=pl
            )
            seen[pl] = [e["Cidr"] for e in got if e.get("Cidr")]
        return seen[pl]

    def best_effort(pl: str) -> list[str]:
        try:
            return entries(pl)
        except Exception:  # not allowed to read it: the rule is not counted
            return []

    return best_effort


def client_groups(ec2: Any, client_ip: str | None) -> list[str]:
    """The security groups of the network interface that owns our address (on EC2)."""
    if not client_ip or ipaddress.ip_address(client_ip).is_loopback:
        return []
    try:
        found = ec2.describe_network_interfaces(
            Filters=[{"Name": "addresses.private-ip-address", "Values": [client_ip]}]
        )["NetworkInterfaces"]
    except Exception:  # a best-effort guess; --client-sg says it for sure
        return []
    return [g["GroupId"] for eni in found for g in eni.get("Groups") or []]
