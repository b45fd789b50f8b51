"""AWS clients for the AWS commands: profile, region (flag > endpoint name > AWS chain),
endpoint (AWS_ENDPOINT_URL, honoured by botocore itself) and standard retry mode, so that
throttling is retried before it is reported. Finding the cache by name or endpoint (what
AWS answers becomes a CacheRef: cache_ref.py).

Clients come from a botocore session, not boto3: they are the same client classes, and
skipping `import boto3` (its resource layer) saves 50-80 ms of every AWS command's start-up
(benchmarks/bench_snapshot_list.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from closeup_ops import errors
from closeup_ops.connect.cache_ref import (
    CacheRef,
    cache_cluster_ref,
    norm_host,
    replication_group_ref,
    serverless_ref,
)
from closeup_ops.endpoint import region_of
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


def error_code(exc: BaseException) -> str:
    """AWS's error code of a botocore ClientError ("" for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _not_found(exc: BaseException) -> bool:
    return "NotFound" in error_code(exc)


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
    wanted = {norm_host(h) for h in (settings.host, settings.tls_server_name) if h}
    caches = list_caches(client)
    for cache in caches:
        if wanted & cache.addresses():
            return cache
    raise _missing(f"no cache has the endpoint {settings.host} (REDIS_HOST)", caches, region)
