"""AWS clients for the AWS commands: profile, region (flag > endpoint name > AWS chain),
endpoint (AWS_ENDPOINT_URL, honoured by botocore itself) and standard retry mode, so that
throttling is retried before it is reported. Finding the cache by name or endpoint.

Clients come from a botocore session, not boto3: they are the same client classes, and
skipping `import boto3` (its resource layer) saves 50-80 ms of every AWS command's start-up
(benchmarks/bench_snapshot_list.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeup_ops import errors
from closeup_ops.endpoint import DEFAULT_PORT, SERVERLESS_READER_PORT, region_of
from closeup_ops.errors import AwsResourceError, UsageError
from closeup_ops.settings import Settings


def aws_session(settings: Settings) -> Any:
    """A botocore session for --profile / AWS_PROFILE (a missing profile: exit 2 now)."""
    import botocore.session

    try:
        session = botocore.session.Session(profile=settings.profile)
        session.get_config_variable("region")  # raises ProfileNotFound for a bad profile
    except Exception as exc:
        raise errors.classify(exc) from None
    _quick_service_listing(session)
    return session


def _quick_service_listing(session: Any) -> None:
    """Before loading one service's model, botocore lists every service it knows by stat-ing
    each of ~400 data directories and their versions (~2,700 stat calls, 40-60 ms, twice per
    client), only to check that the name exists. A directory listing answers that; a name
    that is not there still fails as botocore would (UnknownServiceError)."""
    import os

    loader = session.get_component("data_loader")
    cache = getattr(loader, "_cache", None)
    paths = getattr(loader, "search_paths", None)
    if not isinstance(cache, dict) or not paths:
        return  # a botocore that works differently: keep its own listing

    def listing(type_name: str) -> list[str]:
        key = ("list_available_services", type_name)
        if key not in cache:
            names: set[str] = set()
            for path in paths:
                if os.path.isdir(path):
                    names.update(d for d in os.listdir(path) if not d.startswith((".", "_")))
            cache[key] = sorted(names)
        return cache[key]

    loader.list_available_services = listing


def resolve_region(settings: Settings, session: Any | None = None) -> str:
    """--region, else the region the endpoint's name carries (REDIS_TLS_SERVER_NAME behind a
    tunnel, else REDIS_HOST), else AWS_REGION, else botocore's chain (AWS_DEFAULT_REGION,
    the profile's region). The endpoint says where the cache IS; an environment default only
    says where the operator usually works, so it must not send the call (or sign an IAM
    token) for another region."""
    region = settings.region or region_of(settings.tls_server_name or settings.host)
    if not region:
        session = session or aws_session(settings)
        # botocore reads only AWS_DEFAULT_REGION; the other SDKs and the CLI v2 prefer AWS_REGION.
        region = os.environ.get("AWS_REGION", "").strip() or session.get_config_variable("region")
    if not region:
        raise UsageError(
            "no AWS region",
            "set AWS_REGION, pass --region, or set REDIS_HOST to the "
            "cache endpoint (its name carries the region)",
        )
    return region


def aws_client(settings: Settings, service: str, session: Any | None = None) -> Any:
    from botocore.config import Config

    session = session or aws_session(settings)
    region = resolve_region(settings, session)
    errors.CONTEXT.update(aws_region=region)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=settings.timeout,
        read_timeout=max(settings.timeout, 30),
    )
    client = session.create_client(service, region_name=region, config=config)
    remember_requests(client)
    return client


def remember_requests(client: Any) -> None:
    """Keep each operation's parameters in errors.CONTEXT["aws_requests"], so that AWS
    refusing a request the tool built (InvalidParameterCombination) can show what was sent."""

    def remember(params: dict[str, Any], model: Any, **_: Any) -> None:
        requests = errors.CONTEXT.setdefault("aws_requests", {})
        assert isinstance(requests, dict)
        requests[model.name] = dict(params)

    client.meta.events.register("provide-client-params.*.*", remember)


# --- finding the cache -----------------------------------------------------------------

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
        return {_norm(e["address"]) for e in self.endpoints if e.get("address")}


def _norm(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _endpoint(role: str, ep: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not ep or not ep.get("Address"):
        return []
    return [{"role": role, "address": ep["Address"], "port": ep.get("Port")}]


def pages(call: Callable[..., dict], key: str, token: str = "Marker", **kw: Any) -> list[dict]:
    """All items of a paginated Describe* call (Marker for node APIs, NextToken for serverless)."""
    items: list[dict] = []
    while True:
        page = call(**kw)
        items.extend(page.get(key, []))
        nxt = page.get(token)
        if not nxt:
            return items
        kw[token] = nxt


def _serverless_unsupported(exc: BaseException) -> bool:
    """An API stand-in (moto, LocalStack) that lacks the serverless operations: moto raises
    NotImplementedError in-process and answers a server with a body botocore cannot parse.
    Real AWS regions always have them; this keeps `caches` and `snapshot list` usable in
    the sandbox."""
    return isinstance(exc, NotImplementedError) or type(exc).__name__ == "ResponseParserError"


_WARNED: list[bool] = []  # say it once per run


def optional_serverless(call: Callable[..., dict], key: str, **kw: Any) -> list[dict]:
    try:
        return pages(call, key, token="NextToken", **kw)
    except Exception as exc:
        if not _serverless_unsupported(exc):
            raise
        from closeup_ops import output

        if _WARNED:
            return []
        _WARNED.append(True)
        output.warn(
            "this AWS endpoint does not implement ElastiCache Serverless APIs; "
            "serverless caches and snapshots are not shown"
        )
        return []


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
        key = (_norm(e["address"]), e.get("port"))
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


def list_caches(client: Any) -> list[CacheRef]:
    """Every serverless cache, replication group and stand-alone cache cluster in the region."""
    serverless = optional_serverless(client.describe_serverless_caches, "ServerlessCaches")
    clusters = pages(client.describe_cache_clusters, "CacheClusters", ShowCacheNodeInfo=True)
    by_id = {c["CacheClusterId"]: c for c in clusters}
    groups = pages(client.describe_replication_groups, "ReplicationGroups")
    return (
        [serverless_ref(d) for d in serverless]
        + [replication_group_ref(d, by_id) for d in groups]
        + [cache_cluster_ref(c) for c in clusters if not c.get("ReplicationGroupId")]
    )


def _not_found(exc: BaseException) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return "NotFound" in code


def describe_by_name(client: Any, name: str) -> CacheRef | None:
    """The cache called `name` (AWS stores ids lower-case), of any kind, or None. A
    replication group's members come from ONE paginated DescribeCacheClusters call, not one
    call per member (a 90-shard group with 5 replicas has 540)."""
    name = name.strip().lower()
    try:
        found = optional_serverless(
            client.describe_serverless_caches, "ServerlessCaches", ServerlessCacheName=name
        )
        if found:
            return serverless_ref(found[0])
    except Exception as exc:
        if not _not_found(exc):
            raise
    try:
        group = client.describe_replication_groups(ReplicationGroupId=name)
        desc = group["ReplicationGroups"][0]
    except Exception as exc:
        if not _not_found(exc):
            raise
    else:
        members = set(desc.get("MemberClusters") or [])
        clusters = {
            c["CacheClusterId"]: c
            for c in pages(client.describe_cache_clusters, "CacheClusters", ShowCacheNodeInfo=True)
            if c.get("CacheClusterId") in members
        }
        return replication_group_ref(desc, clusters)
    try:
        got = client.describe_cache_clusters(CacheClusterId=name, ShowCacheNodeInfo=True)
        return cache_cluster_ref(got["CacheClusters"][0])
    except Exception as exc:
        if not _not_found(exc):
            raise
    return None


def _missing(what: str, caches: list[CacheRef], region: str | None) -> AwsResourceError:
    where = f" in {region}" if region else ""
    if caches:
        names = ", ".join(f"{c.name} ({c.kind})" for c in caches)
        hint = f"caches{where}: {names}; pass --cache NAME or set ELASTICACHE_CACHE"
    else:
        hint = f"there are no caches{where}; check --region / AWS_REGION and the account"
    return AwsResourceError(f"{what}{where}", hint)


def find_cache(settings: Settings, client: Any | None = None) -> CacheRef:
    """The cache named by --cache / ELASTICACHE_CACHE, else the one whose endpoints
    (serverless endpoint and reader, replication group primary/reader/configuration, nodes)
    include REDIS_HOST (or REDIS_TLS_SERVER_NAME, which a tunnel sets to the real name)."""
    client = client or aws_client(settings, "elasticache")
    region = errors.CONTEXT.get("aws_region")
    if settings.cache:
        found = describe_by_name(client, settings.cache)
        if found is None:
            raise _missing(f"cache {settings.cache!r} not found", list_caches(client), region)
        return found
    wanted = {_norm(h) for h in (settings.host, settings.tls_server_name) if h}
    caches = list_caches(client)
    for cache in caches:
        if wanted & cache.addresses():
            return cache
    raise _missing(f"no cache has the endpoint {settings.host} (REDIS_HOST)", caches, region)
