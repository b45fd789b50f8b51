"""One cache as AWS describes it, whatever its kind (serverless cache, replication group,
stand-alone cache cluster): CacheRef, built from a Describe* answer, with its endpoints,
ports and the facts the commands need. Plain data, no AWS call (those are in aws.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closeup_ops.endpoint import DEFAULT_PORT, SERVERLESS_READER_PORT

SERVERLESS = "serverless"
REPLICATION_GROUP = "replication-group"
CACHE_CLUSTER = "cache-cluster"


@dataclass
class CacheRef:
    """One cache as AWS describes it, whatever its kind.

    `endpoints` are {"role", "address", "port"} dicts (primary, reader, configuration, node);
    `raw` is AWS's own description (member clusters of a replication group under
    raw["_members"]).
    """

    kind: str  # "serverless" | "replication-group" | "cache-cluster"
    name: str
    engine: str | None = None
    engine_version: str | None = None
    status: str | None = None
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    tls: bool | None = None
    cluster_mode: bool | None = None
    node_type: str | None = None
    subnet_group: str | None = None
    subnet_ids: list[str] = field(default_factory=list)
    arn: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def addresses(self) -> set[str]:
        return {norm_host(e["address"]) for e in self.endpoints if e.get("address")}


def norm_host(host: str) -> str:
    """A DNS name as AWS and users may write it: case and a trailing dot do not count."""
    return host.strip().lower().rstrip(".")


def _endpoint(role: str, ep: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not ep or not ep.get("Address"):
        return []
    return [{"role": role, "address": ep["Address"], "port": ep.get("Port")}]


MEMCACHED_PORT = 11211
MEMCACHED_SERVERLESS_READER_PORT = 11212


def is_memcached(engine: str | None) -> bool:
    return str(engine or "").lower() == "memcached"


def default_ports(kind: str, engine: str | None) -> list[int]:
    """The ports a cache listens on when AWS did not say: serverless caches have a reader
    port beside the main one (Valkey/Redis 6379 + 6380, Memcached 11211 + 11212)."""
    if is_memcached(engine):
        main = [MEMCACHED_PORT]
        return main + [MEMCACHED_SERVERLESS_READER_PORT] if kind == SERVERLESS else main
    return [DEFAULT_PORT, SERVERLESS_READER_PORT] if kind == SERVERLESS else [DEFAULT_PORT]


def serverless_ref(desc: dict[str, Any]) -> CacheRef:
    endpoints = _endpoint("endpoint", desc.get("Endpoint")) + _endpoint(
        "reader", desc.get("ReaderEndpoint")
    )
    ports = sorted({e["port"] for e in endpoints if e.get("port")}) or default_ports(
        SERVERLESS, desc.get("Engine")
    )
    version = desc.get("FullEngineVersion") or desc.get("MajorEngineVersion")
    return CacheRef(
        kind=SERVERLESS,
        name=desc["ServerlessCacheName"],
        engine=desc.get("Engine"),
        engine_version=version,
        status=desc.get("Status"),
        endpoints=endpoints,
        ports=ports,
        security_group_ids=list(desc.get("SecurityGroupIds") or []),
        tls=True,
        cluster_mode=True,
        subnet_ids=list(desc.get("SubnetIds") or []),
        arn=desc.get("ARN"),
        raw=desc,
    )


def _cluster_groups(cluster: dict[str, Any]) -> list[str]:
    return [
        g["SecurityGroupId"]
        for g in cluster.get("SecurityGroups") or []
        if g.get("SecurityGroupId")
    ]


def _node_endpoints(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for node in cluster.get("CacheNodes") or []:
        out += _endpoint(f"node {cluster['CacheClusterId']}", node.get("Endpoint"))
    return out


def replication_group_ref(desc: dict[str, Any], clusters: dict[str, dict]) -> CacheRef:
    """A replication group; `clusters` (id -> DescribeCacheClusters entry) supplies what the
    group's own description leaves out: security groups, subnet group, engine version."""
    endpoints = _endpoint("configuration", desc.get("ConfigurationEndpoint"))
    for group in desc.get("NodeGroups") or []:
        endpoints += _endpoint("primary", group.get("PrimaryEndpoint"))
        endpoints += _endpoint("reader", group.get("ReaderEndpoint"))
        for member in group.get("NodeGroupMembers") or []:
            endpoints += _endpoint(
                f"node {member.get('CacheClusterId')}", member.get("ReadEndpoint")
            )
    members = [clusters[m] for m in desc.get("MemberClusters") or [] if m in clusters]
    # ReadEndpoint exists only with cluster mode off: the nodes of a cluster-mode-enabled
    # group are named only in their cache clusters' CacheNodes
    for member in members:
        endpoints += _node_endpoints(member)
    endpoints = _unique(endpoints)
    groups: list[str] = []
    for member in members:
        groups += [g for g in _cluster_groups(member) if g not in groups]
    first = members[0] if members else {}
    ports = sorted({e["port"] for e in endpoints if e.get("port")}) or [DEFAULT_PORT]
    return CacheRef(
        kind=REPLICATION_GROUP,
        name=desc["ReplicationGroupId"],
        engine=desc.get("Engine") or first.get("Engine"),
        engine_version=first.get("EngineVersion"),
        status=desc.get("Status"),
        endpoints=endpoints,
        ports=ports,
        security_group_ids=groups,
        tls=desc.get("TransitEncryptionEnabled"),
        cluster_mode=desc.get("ClusterEnabled"),
        node_type=desc.get("CacheNodeType"),
        subnet_group=first.get("CacheSubnetGroupName"),
        arn=desc.get("ARN"),
        raw={**desc, "_members": members},
    )


def _unique(endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for e in endpoints:
        key = (norm_host(e["address"]), e.get("port"))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def cache_cluster_ref(desc: dict[str, Any]) -> CacheRef:
    endpoints = _endpoint("configuration", desc.get("ConfigurationEndpoint"))
    endpoints += _node_endpoints(desc)
    ports = sorted({e["port"] for e in endpoints if e.get("port")}) or [DEFAULT_PORT]
    return CacheRef(
        kind=CACHE_CLUSTER,
        name=desc["CacheClusterId"],
        engine=desc.get("Engine"),
        engine_version=desc.get("EngineVersion"),
        status=desc.get("CacheClusterStatus"),
        endpoints=endpoints,
        ports=ports,
        security_group_ids=_cluster_groups(desc),
        tls=desc.get("TransitEncryptionEnabled"),
        cluster_mode=False,
        node_type=desc.get("CacheNodeType"),
        subnet_group=desc.get("CacheSubnetGroupName"),
        arn=desc.get("ARN"),
        raw=desc,
    )
