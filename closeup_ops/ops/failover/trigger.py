"""What starts a failover: TestFailover on a replication group's node group (AWS), or CLUSTER
FAILOVER sent to a replica of one shard of a self-managed cluster; and, for AWS, the
replication group's events over the run."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from closeup_ops.errors import AwsResourceError, CheckFailed, UsageError
from closeup_ops.settings import Settings

SERVERLESS_HINT = (
    "serverless caches have no user-triggered failover; run with --trigger none while "
    "something outside acts"
)


@dataclass
class AwsGroup:
    """The replication group TestFailover acts on."""

    replication_group: str
    node_group: str
    primary_node: str | None  # cache cluster id of the node group's primary
    members: list[str] = field(default_factory=list)
    slots: set[int] | None = field(default=None, repr=False)  # cluster mode: its hash slots
    cluster_mode: bool = False
    # "host:port" of each member's node (DescribeCacheClusters CacheNodes) -> cache cluster id
    node_endpoints: dict[str, str] = field(default_factory=dict, repr=False)


EVENT_GRACE_S = 30.0  # DescribeEvents keeps being read this long after the run for recovery
EVENT_POLL_S = 5.0
EVENT_PAGES = 20  # at most 20 pages of 100 events per listing
DONE_WORDS = ("completed", "complete", "finished")  # "Failover ... completed", "Finished recovery"


@dataclass
class AwsEvent:
    t: float  # seconds since the probe started (from the event's wall time)
    at: str
    source: str
    message: str


def refuse_serverless(settings: Settings, trigger: str) -> None:
    if trigger != "none" and settings.serverless:
        raise UsageError(
            f"failover-test --trigger {trigger} is refused on serverless endpoint {settings.host}",
            SERVERLESS_HINT,
        )


def prepare_aws(client: Any, settings: Settings, shard: str | None) -> AwsGroup:
    """Check that TestFailover can run: the cache (--cache, else found by REDIS_HOST among the
    account's endpoints) is a replication group with automatic failover on, available, and
    has the node group named by --shard (default: the first)."""
    from closeup_ops.connect.aws import find_cache

    cache = find_cache(settings, client)
    if cache.kind == "serverless":
        raise UsageError(
            f"failover-test --trigger aws is refused: {cache.name} is a serverless cache",
            SERVERLESS_HINT,
        )
    if cache.kind != "replication-group":
        raise AwsResourceError(
            f"{cache.name} is a single cache cluster, not a replication group: it has no "
            "replica to fail over to",
            "add replicas (a replication group) or use --trigger none",
        )
    group = cache.raw
    group_id = cache.name
    failover = group.get("AutomaticFailover", "disabled")
    if failover != "enabled":
        raise AwsResourceError(
            f"automatic failover is {failover} on replication group {group_id}: "
            "TestFailover needs it enabled",
            "enable it (aws elasticache modify-replication-group --replication-group-id "
            f"{group_id} --automatic-failover-enabled --apply-immediately) or use "
            "--trigger none",
        )
    if group.get("Status") != "available":
        raise AwsResourceError(
            f"replication group {group_id} is {group.get('Status')}",
            "wait until it is available and retry",
        )
    node_group = pick_node_group(group, shard)
    return AwsGroup(
        replication_group=group_id,
        node_group=node_group["NodeGroupId"],
        primary_node=primary_of(node_group),
        members=list(group.get("MemberClusters", [])),
        slots=parse_slots(node_group.get("Slots")),
        cluster_mode=bool(group.get("ClusterEnabled")),
        node_endpoints=_node_endpoints(group.get("_members") or []),
    )


def _node_endpoints(members: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for member in members:
        for node in member.get("CacheNodes") or []:
            ep = node.get("Endpoint") or {}
            if ep.get("Address"):
                out[f"{ep['Address'].lower().rstrip('.')}:{ep.get('Port')}"] = member[
                    "CacheClusterId"
                ]
    return out


def node_name(group: AwsGroup, identity: Any) -> str | None:
    """The primary as the nodes report it (the probe's NodeIdentity: who answered for its
    slot), named by its cache cluster id when its address is a member's node endpoint.
    Needed with cluster mode on, where DescribeReplicationGroups sets no CurrentRole."""
    if identity is None:
        return None
    address = str(identity.address).lower()
    return group.node_endpoints.get(address) or f"{identity.address} (from the nodes)"


def parse_slots(text: str | None) -> set[int] | None:
    """A node group's "Slots" ("0-5460" or "0-100,200-300") as a set; None when absent."""
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit():
            out.update(range(int(low), int(high or low) + 1))
    return out or None


def pick_node_group(group: dict[str, Any], shard: str | None) -> dict[str, Any]:
    groups = sorted(group.get("NodeGroups", []), key=lambda g: g["NodeGroupId"])
    if not groups:
        raise AwsResourceError(
            f"replication group {group['ReplicationGroupId']} has no node groups",
            "check it in the console",
        )
    if shard is None:
        return groups[0]
    for g in groups:
        if g["NodeGroupId"] == shard or (
            shard.isdigit() and g["NodeGroupId"].isdigit() and int(g["NodeGroupId"]) == int(shard)
        ):
            return g
    names = ", ".join(g["NodeGroupId"] for g in groups)
    raise UsageError(
        f"--shard {shard} is not a node group of {group['ReplicationGroupId']}",
        f"use one of {names}",
    )


def primary_of(node_group: dict[str, Any]) -> str | None:
    for member in node_group.get("NodeGroupMembers", []):
        if member.get("CurrentRole") == "primary":
            return member.get("CacheClusterId")
    return None


def aws_primary_now(client: Any, group: AwsGroup) -> str | None:
    found = client.describe_replication_groups(ReplicationGroupId=group.replication_group)
    for g in found["ReplicationGroups"][0].get("NodeGroups", []):
        if g["NodeGroupId"] == group.node_group:
            return primary_of(g)
    return None


def test_failover(client: Any, group: AwsGroup) -> str:
    client.test_failover(ReplicationGroupId=group.replication_group, NodeGroupId=group.node_group)
    return f"TestFailover {group.replication_group} node group {group.node_group}"


test_failover.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def collect_events(
    client: Any,
    group: AwsGroup,
    started: datetime.datetime,
    ended: datetime.datetime,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], datetime.datetime] | None = None,
) -> tuple[list[AwsEvent], str | None]:
    """DescribeEvents over the run for the group and its member nodes, oldest first, and a
    note when a listing was cut at EVENT_PAGES pages. ElastiCache posts the end of a
    failover ("... completed", "Finished recovery ...") after the writes are back, often
    after the run: the events are read again every EVENT_POLL_S for up to EVENT_GRACE_S
    until one such event (since the run started) is there."""
    import time

    sleep = sleep or time.sleep
    now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
    start = started - datetime.timedelta(seconds=60)
    deadline = now() + datetime.timedelta(seconds=EVENT_GRACE_S)
    end = ended + datetime.timedelta(seconds=5)
    while True:
        raw, capped = _listing(client, group, start, end)
        done = any(
            _date(e) >= started and any(w in str(e.get("Message", "")).lower() for w in DONE_WORDS)
            for e in raw
        )
        left = (deadline - now()).total_seconds()
        if done or capped or left <= 0:
            break
        sleep(min(EVENT_POLL_S, left))
        end = now()
    note = (
        f"AWS events: a DescribeEvents listing stopped at {EVENT_PAGES * 100} events; "
        "more happened in the window and are not shown"
        if capped
        else None
    )
    return sorted((_event(e, started) for e in raw), key=lambda e: e.t), note


def _date(e: dict[str, Any]) -> datetime.datetime:
    date = e["Date"]
    return date.replace(tzinfo=datetime.timezone.utc) if date.tzinfo is None else date


def _event(e: dict[str, Any], started: datetime.datetime) -> AwsEvent:
    date = _date(e)
    return AwsEvent(
        t=round((date - started).total_seconds(), 3),
        at=date.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=str(e.get("SourceIdentifier", "")),
        message=str(e.get("Message", "")),
    )


def _listing(
    client: Any, group: AwsGroup, start: datetime.datetime, end: datetime.datetime
) -> tuple[list[dict[str, Any]], bool]:
    raw, capped = _events(
        client,
        SourceIdentifier=group.replication_group,
        SourceType="replication-group",
        StartTime=start,
        EndTime=end,
    )
    members = set(group.members)
    nodes, capped_nodes = _events(client, SourceType="cache-cluster", StartTime=start, EndTime=end)
    raw += [e for e in nodes if e.get("SourceIdentifier") in members]
    return raw, capped or capped_nodes


def _events(client: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
    """(events, capped): bounded to EVENT_PAGES pages of 100."""
    out, marker = [], None
    for _ in range(EVENT_PAGES):
        page = client.describe_events(
            MaxRecords=100, **kwargs, **({"Marker": marker} if marker else {})
        )
        out += page.get("Events", [])
        marker = page.get("Marker")
        if not marker:
            return out, False
    return out, True


# --- self-managed cluster -----------------------------------------------------------------


@dataclass
class Shard:
    index: int  # 1-based, shards ordered by their first slot
    primary: str
    replicas: list[str]
    slots: set[int] = field(repr=False)


def cluster_shards(cluster_client: Any) -> list[Shard]:
    """Shards from the client's slot map: primary, replicas and slots of each."""
    by_primary: dict[str, tuple[list[str], set[int]]] = {}
    for slot, nodes in cluster_client.nodes_manager.slots_cache.items():
        if not nodes:
            continue
        primary = f"{nodes[0].host}:{nodes[0].port}"
        replicas, slots = by_primary.setdefault(primary, ([], set()))
        slots.add(slot)
        for node in nodes[1:]:
            name = f"{node.host}:{node.port}"
            if name not in replicas:
                replicas.append(name)
    ordered = sorted(by_primary.items(), key=lambda kv: min(kv[1][1]))
    return [Shard(i + 1, p, sorted(r), s) for i, (p, (r, s)) in enumerate(ordered)]


def pick_shard(shards: list[Shard], shard: str | None) -> Shard:
    if shard is None:
        return shards[0]
    for s in shards:
        if shard == s.primary or (shard.isdigit() and int(shard) == s.index):
            return s
    names = ", ".join(f"{s.index} ({s.primary})" for s in shards)
    raise UsageError(f"--shard {shard} is not a shard of this cluster", f"use one of {names}")


def shard_replicas(cluster_client: Any, shard: Shard) -> list[str]:
    """Healthy replicas of the shard's primary, from CLUSTER NODES (CLUSTER SLOTS leaves out
    replicas that are still joining; CLUSTER NODES names every node and its primary)."""
    host, _, port = shard.primary.rpartition(":")
    node = cluster_client.get_node(host=host, port=int(port))
    nodes = node.redis_connection.execute_command("CLUSTER NODES")  # parsed: address -> info
    primary_id = next((i["node_id"] for i in nodes.values() if "myself" in i["flags"]), None)
    out = []
    for address, info in nodes.items():
        flags = info["flags"]
        if info["master_id"] == primary_id and "fail" not in flags and "noaddr" not in flags:
            out.append(address.split("@")[0])
    return sorted(out) or shard.replicas


def cluster_failover(
    cluster_client: Any, shard: Shard, connect_node: Callable[[str, int], Any]
) -> str:
    """CLUSTER FAILOVER on the shard's first replica (a coordinated, lossless switch)."""
    if not shard.replicas:
        raise UsageError(
            f"shard {shard.index} ({shard.primary}) has no replica",
            "CLUSTER FAILOVER needs a replica; add one or pick another --shard",
        )
    replica = shard.replicas[0]
    host, _, port = replica.rpartition(":")
    client = connect_node(host, int(port))
    try:
        client.execute_command("CLUSTER FAILOVER")
    except ResponseError as exc:
        raise CheckFailed(
            f"{replica} refused CLUSTER FAILOVER: {exc}",
            "check CLUSTER NODES: the replica must be connected to its primary and in sync",
        ) from None
    finally:
        client.close()
    return f"CLUSTER FAILOVER on {replica} (replica of {shard.primary})"


def node_client(settings: Settings, remap: Any) -> Callable[[str, int], Any]:
    """Open a plain client to one cluster node (as the cluster announces it)."""

    def connect_node(host: str, port: int) -> Any:
        import redis

        from closeup_ops.connect.redis import connection_kwargs

        if remap is not None:
            host, port = remap((host, port))
        host, port = settings.dial(host, port)  # REDIS_RESOLVE: the announced name -> ADDR
        kwargs = connection_kwargs(settings)
        kwargs.setdefault("connection_class", redis.Connection)
        pool = redis.ConnectionPool(host=host, port=port, **kwargs)
        return redis.Redis(connection_pool=pool)

    return connect_node


class TriggerThread:
    """Runs `fn` once, `at` probe-seconds in; keeps when it ran, what it said, what failed."""

    def __init__(self, fn: Callable[[], str], at: float, now: Callable[[], float]):
        self.fn, self.at, self.now = fn, at, now
        self.started: float | None = None
        self.done: float | None = None
        self.detail = ""
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-trigger", daemon=True)

    def start(self) -> TriggerThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._cancel.wait(max(0.0, self.at - self.now())):
            return
        self.started = round(self.now(), 4)
        try:
            self.detail = self.fn()
        except BaseException as exc:  # handed to the probe thread, which raises it
            self.error = exc
        self.done = round(self.now(), 4)

    @property
    def finished(self) -> bool:
        return self.done is not None

    def cancel(self, wait: float) -> None:
        self._cancel.set()
        self._thread.join(wait)
