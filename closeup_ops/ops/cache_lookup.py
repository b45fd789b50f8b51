"""Find one ElastiCache cache by name or by endpoint address, for `doctor` and `stats`.

A small lookup of its own taking the boto3 client as a parameter (so tests hand it moto or
a Stubber); `closeup_ops.connect.aws.find_cache` does the same job for the AWS commands and
could replace it. It returns only what doctor and stats need: status, port, security
groups, backup retention and the CloudWatch dimensions of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SERVERLESS = "serverless"
REPLICATION_GROUP = "replication-group"
CACHE_CLUSTER = "cache-cluster"


@dataclass
class CacheFacts:
    name: str
    kind: str
    status: str
    engine: str | None = None
    port: int | None = None
    # None: AWS did not say (e.g. a replication group whose member clusters are unreadable)
    security_group_ids: list[str] | None = None
    snapshot_retention: int | None = None
    snapshot_window: str | None = None
    member_clusters: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    def metric_dimensions(self) -> list[tuple[str, str]]:
        """(name, value) pairs that CloudWatch puts on this cache's AWS/ElastiCache metrics."""
        if self.kind == SERVERLESS:
            return [("clusterId", self.name)]
        if self.kind == REPLICATION_GROUP:
            return [("ReplicationGroupId", self.name)] + [
                ("CacheClusterId", m) for m in self.member_clusters
            ]
        return [("CacheClusterId", self.name)]


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _not_found(exc: BaseException) -> bool:
    return "NotFound" in _code(exc)


def _unsupported(exc: BaseException) -> bool:
    # moto (in-process or as a server) lacks the serverless APIs; real regions have them.
    return isinstance(exc, NotImplementedError) or type(exc).__name__ == "ResponseParserError"


def _addr(ep: dict | None) -> list[str]:
    return [ep["Address"].lower()] if ep and ep.get("Address") else []


def _serverless(desc: dict[str, Any]) -> CacheFacts:
    endpoint = desc.get("Endpoint") or {}
    return CacheFacts(
        name=desc["ServerlessCacheName"],
        kind=SERVERLESS,
        status=desc.get("Status", "?"),
        engine=desc.get("Engine"),
        port=endpoint.get("Port"),
        security_group_ids=list(desc.get("SecurityGroupIds") or []),
        snapshot_retention=desc.get("SnapshotRetentionLimit"),
        snapshot_window=desc.get("DailySnapshotTime"),
        addresses=_addr(endpoint) + _addr(desc.get("ReaderEndpoint")),
    )


def _cluster(desc: dict[str, Any]) -> CacheFacts:
    addresses = _addr(desc.get("ConfigurationEndpoint"))
    port = (desc.get("ConfigurationEndpoint") or {}).get("Port")
    for node in desc.get("CacheNodes") or []:
        addresses += _addr(node.get("Endpoint"))
        port = port or (node.get("Endpoint") or {}).get("Port")
    groups = desc.get("SecurityGroups")
    return CacheFacts(
        name=desc["CacheClusterId"],
        kind=CACHE_CLUSTER,
        status=desc.get("CacheClusterStatus", "?"),
        engine=desc.get("Engine"),
        port=port,
        security_group_ids=None if groups is None else [g["SecurityGroupId"] for g in groups],
        snapshot_retention=desc.get("SnapshotRetentionLimit"),
        snapshot_window=desc.get("SnapshotWindow"),
        addresses=addresses,
    )


def _group(ec: Any, desc: dict[str, Any]) -> CacheFacts:
    port = (desc.get("ConfigurationEndpoint") or {}).get("Port")
    for group in desc.get("NodeGroups") or []:
        port = port or (group.get("PrimaryEndpoint") or {}).get("Port")
    members = list(desc.get("MemberClusters") or [])
    # The group's own description has no security groups: its member clusters carry them.
    groups: list[str] | None = None
    engine = desc.get("Engine")
    for member in members[:1]:
        try:
            got = ec.describe_cache_clusters(CacheClusterId=member)["CacheClusters"][0]
        except Exception as exc:
            if not _not_found(exc):
                raise
            continue
        engine = engine or got.get("Engine")
        if got.get("SecurityGroups") is not None:
            groups = [g["SecurityGroupId"] for g in got["SecurityGroups"]]
    return CacheFacts(
        name=desc["ReplicationGroupId"],
        kind=REPLICATION_GROUP,
        status=desc.get("Status", "?"),
        engine=engine,
        port=port,
        security_group_ids=groups,
        snapshot_retention=desc.get("SnapshotRetentionLimit"),
        snapshot_window=desc.get("SnapshotWindow"),
        member_clusters=members,
        addresses=_group_addresses(desc),
    )


def _serverless_list(ec: Any, **kw: Any) -> list[dict]:
    try:
        return _pages(ec.describe_serverless_caches, "ServerlessCaches", "NextToken", **kw)
    except Exception as exc:
        if _unsupported(exc) or _not_found(exc):
            return []
        raise


def _pages(call: Any, key: str, token: str = "Marker", **kw: Any) -> list[dict]:
    items: list[dict] = []
    while True:
        page = call(**kw)
        items.extend(page.get(key, []))
        if not page.get(token):
            return items
        kw[token] = page[token]


def by_name(ec: Any, name: str) -> CacheFacts | None:
    """The cache called `name`: serverless, then replication group, then cache cluster."""
    found = _serverless_list(ec, ServerlessCacheName=name)
    if found:
        return _serverless(found[0])
    try:
        desc = ec.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
        return _group(ec, desc)
    except Exception as exc:
        if not _not_found(exc):
            raise
    try:
        desc = ec.describe_cache_clusters(CacheClusterId=name, ShowCacheNodeInfo=True)
        cluster = desc["CacheClusters"][0]
    except Exception as exc:
        if not _not_found(exc):
            raise
        return None
    if cluster.get("ReplicationGroupId"):
        return by_name(ec, cluster["ReplicationGroupId"])
    return _cluster(cluster)


def by_address(ec: Any, hosts: list[str]) -> CacheFacts | None:
    """The cache one of whose endpoints (or node addresses) is one of `hosts`."""
    wanted = {h.lower().rstrip(".") for h in hosts if h}
    for desc in _serverless_list(ec):
        facts = _serverless(desc)
        if wanted & set(facts.addresses):
            return facts
    for desc in _pages(ec.describe_replication_groups, "ReplicationGroups"):
        if wanted & set(_group_addresses(desc)):
            return _group(ec, desc)
    for desc in _pages(ec.describe_cache_clusters, "CacheClusters", ShowCacheNodeInfo=True):
        facts = _cluster(desc)
        if wanted & set(facts.addresses):
            if desc.get("ReplicationGroupId"):
                return by_name(ec, desc["ReplicationGroupId"])
            return facts
    return None


def _group_addresses(desc: dict[str, Any]) -> list[str]:
    out = _addr(desc.get("ConfigurationEndpoint"))
    for group in desc.get("NodeGroups") or []:
        out += _addr(group.get("PrimaryEndpoint")) + _addr(group.get("ReaderEndpoint"))
        for member in group.get("NodeGroupMembers") or []:
            out += _addr(member.get("ReadEndpoint"))
    return out


def lookup(ec: Any, name: str | None, hosts: list[str]) -> CacheFacts | None:
    """By name when one is given (--cache / ELASTICACHE_CACHE), else by endpoint address."""
    return by_name(ec, name) if name else by_address(ec, hosts)
