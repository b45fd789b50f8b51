"""From what triage collected to a short ranked list of findings: each with its evidence
and what to do. Critical findings (the cache is failing requests or losing data now) make
`triage` exit 6. The limits are constants here, named in the README's "During an incident".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from closeup_ops.ops.thresholds import Thresholds

CRITICAL, WARNING = "critical", "warning"
MEMORY_FULL = 0.90  # used / maxmemory
CLIENTS_FULL = 0.90  # connected / maxclients
MANY_FROM_ONE = 100  # connections from one source (host + client name) ...
MANY_SHARE = 0.5  # ... that hold at least this share of all connections
REPLICA_LAG_S = 5  # seconds since a replica's last acknowledgement
BIG_KEY = 1 << 20  # bytes (MEMORY USAGE)
HOT_FREQ = 100  # OBJECT FREQ (LFU log counter; ~45k recent accesses at lfu-log-factor 10)
IMBALANCE = 2.0  # a shard's memory against the median shard ...
IMBALANCE_MIN = 16 << 20  # ... and at least this much more
NO_TTL = 0.10  # a namespace whose memory is less than this share with a TTL
BUSY_EVENTS = {"failover", "node-replacement"}
URGENT_UPDATES = {"critical", "important"}


@dataclass
class Finding:
    severity: str
    id: str
    title: str
    evidence: list[str]
    action: str
    commands: list[str] = field(default_factory=list)


def _mb(n: float) -> str:
    from closeup_ops.output import human_bytes

    return human_bytes(n)


def _rate(n: float) -> str:
    return f"{n / 1000:.1f}k/s" if n >= 1000 else f"{n:g}/s"


def _namespace_evidence(keys: Any) -> list[str]:
    if keys is None or not keys.namespaces:
        return []
    top = keys.namespaces[0]
    line = (
        f"namespace {top.namespace} holds {top.share:.0%} of sampled memory, "
        f"{top.ttl_share:.0%} of it with a TTL ({keys.sampled} keys sampled)"
    )
    return [line]


def memory_findings(nodes: list[Any], keys: Any) -> list[Finding]:
    out = []
    for n in nodes:
        share = n.memory_share
        if n.evictions_per_s > 0:
            out.append(
                Finding(
                    CRITICAL,
                    "evictions",
                    f"{n.address}: evicting {_rate(n.evictions_per_s)}",
                    [
                        f"evictions {_rate(n.evictions_per_s)} over the last "
                        f"{n.interval_s:g} s, {n.evicted_keys} since start",
                        f"memory {_mb(n.used_memory)} of {_mb(n.maxmemory)}"
                        + (f" ({share:.0%})" if share else "")
                        + f", policy {n.maxmemory_policy}",
                        *_namespace_evidence(keys),
                    ],
                    "keys are being dropped to make room: set TTLs on the namespace that "
                    "holds the memory, delete what is not needed, or scale up",
                    [
                        "closeup-ops keys --summary",
                        "closeup-ops snapshot create",
                        "closeup-ops keys 'NAMESPACE:*' --delete --yes",
                    ],
                )
            )
        elif share is not None and share >= MEMORY_FULL:
            noevict = (n.maxmemory_policy or "") == "noeviction"
            failing = noevict and (share >= 1 or n.oom_errors_per_s > 0)
            evidence = [
                f"memory {_mb(n.used_memory)} of {_mb(n.maxmemory)} ({share:.0%}), "
                f"policy {n.maxmemory_policy}"
            ]
            if n.oom_errors_per_s:
                evidence.append(f"OOM errors {_rate(n.oom_errors_per_s)}")
            out.append(
                Finding(
                    CRITICAL if failing else WARNING,
                    "memory-full",
                    f"{n.address}: memory {share:.0%} full"
                    + (": writes fail with OOM" if failing else ""),
                    evidence + _namespace_evidence(keys),
                    "free memory before the limit (TTLs, deletes) or scale up"
                    + ("; with noeviction every write fails at the limit" if noevict else ""),
                    ["closeup-ops keys --summary", "closeup-ops snapshot create"],
                )
            )
    return out


def client_findings(nodes: list[Any], clients: Any) -> list[Finding]:
    out = []
    for n in nodes:
        full = n.connected_clients / n.maxclients if n.maxclients else 0
        if n.rejected_per_s > 0 or full >= CLIENTS_FULL:
            out.append(
                Finding(
                    CRITICAL,
                    "maxclients",
                    f"{n.address}: {n.connected_clients} of {n.maxclients} connections"
                    + (f", rejecting {_rate(n.rejected_per_s)}" if n.rejected_per_s else ""),
                    [
                        f"connected {n.connected_clients}, maxclients {n.maxclients} "
                        f"({full:.0%}); rejected {_rate(n.rejected_per_s)} now, "
                        f"{n.rejected_connections} since start",
                        *_top_sources(clients),
                    ],
                    "new connections are (about to be) refused: find the source that holds "
                    "them (pool size, leaked connections) and restart or fix it",
                )
            )
    if clients is not None and clients.groups:
        g = clients.groups[0]
        if g.connections >= MANY_FROM_ONE and g.connections >= MANY_SHARE * clients.total:
            out.append(
                Finding(
                    WARNING,
                    "many-from-one",
                    f"{g.connections} of {clients.total} connections from one source",
                    _top_sources(clients)
                    + [f"idle median {g.idle_median_s:g} s, max {g.idle_max_s} s"],
                    "a connection pool too large or leaking: check that host's pool settings "
                    "and that connections are reused",
                )
            )
    if clients is not None and clients.buffers:
        b = clients.buffers[0]
        out.append(
            Finding(
                WARNING,
                "output-buffer",
                f"{len(clients.buffers)} client(s) not reading their replies",
                [
                    f"{x.source}"
                    + (f" ({x.name})" if x.name else "")
                    + f" on {x.node}: {_mb(x.omem_bytes)} waiting, last command {x.cmd}"
                    for x in clients.buffers[:3]
                ],
                f"a slow or stuck reader holds server memory ({_mb(b.omem_bytes)} and more); "
                "fix or restart that client; big replies (see big keys) make it worse",
            )
        )
    return out


def _top_sources(clients: Any) -> list[str]:
    if clients is None or not clients.groups:
        return []
    parts = []
    for g in clients.groups[:3]:
        who = g.source + (f" ({g.name})" if g.name else "")
        parts.append(f"{who}: {g.connections}")
    return ["by source: " + ", ".join(parts)]


def replication_findings(nodes: list[Any]) -> list[Finding]:
    out = []
    for n in nodes:
        if n.role != "master" and n.master_link_status not in (None, "up"):
            out.append(
                Finding(
                    CRITICAL,
                    "replica-link-down",
                    f"{n.address}: replica's link to its primary is {n.master_link_status}",
                    [
                        f"master_link_status {n.master_link_status}, last I/O "
                        f"{n.master_last_io_s} s ago"
                    ],
                    "this replica serves stale reads and cannot take over: check the "
                    "primary (events, failover) and the network between them",
                    ["closeup-ops events", "closeup-ops failover-test --trigger none"],
                )
            )
        for r in n.replicas:
            if r.lag_s >= REPLICA_LAG_S or r.state != "online":
                out.append(
                    Finding(
                        WARNING,
                        "replica-lag",
                        f"{n.address}: replica {r.address} {r.state}, {r.lag_s} s behind",
                        [
                            f"last acknowledgement {r.lag_s} s ago, {r.behind_bytes} bytes "
                            f"behind, state {r.state}"
                        ],
                        "reads from this replica are stale and a failover to it would lose "
                        "writes: look for a busy or stuck replica, large writes, the network",
                        ["closeup-ops events"],
                    )
                )
    return out


def key_findings(keys: Any) -> list[Finding]:
    if keys is None:
        return []
    out = []
    big = [k for k in keys.biggest if (k.bytes or 0) >= BIG_KEY]
    if big:
        out.append(
            Finding(
                WARNING,
                "big-key",
                f"{len(big)} sampled key(s) of {_mb(BIG_KEY)} or more",
                [f"{k.key} on {k.node}: {_mb(k.bytes)}" for k in big[:3]],
                "reading, expiring or deleting a big key blocks the server; split it, or "
                "delete it with UNLINK (keys --delete does) after a snapshot",
                ["closeup-ops snapshot create", "closeup-ops keys 'KEY' --delete --yes"],
            )
        )
    hot = [k for k in keys.hottest if (k.freq or 0) >= HOT_FREQ]
    if hot:
        out.append(
            Finding(
                WARNING,
                "hot-key",
                f"hot key {hot[0].key} (LFU frequency {hot[0].freq})",
                [f"{k.key} on {k.node}: OBJECT FREQ {k.freq}" for k in hot[:3]],
                "one key takes a large share of the traffic and of one shard's CPU: cache it "
                "in the application, or spread it over several keys",
            )
        )
    return out


def shard_findings(nodes: list[Any], cluster: bool) -> list[Finding]:
    primaries = [n for n in nodes if n.role == "master"]
    if not cluster or len(primaries) < 2:
        return []
    median = statistics.median(n.used_memory for n in primaries)
    top = max(primaries, key=lambda n: n.used_memory)
    if top.used_memory >= IMBALANCE * median and top.used_memory - median >= IMBALANCE_MIN:
        return [
            Finding(
                WARNING,
                "shard-imbalance",
                f"shard {top.address} holds {top.used_memory / median:.1f}x the memory "
                "of the median shard",
                [
                    "memory by shard: "
                    + ", ".join(
                        f"{n.address} {_mb(n.used_memory)} ({n.keys} keys)" for n in primaries
                    ),
                    "ops/s by shard: "
                    + ", ".join(f"{n.address} {n.ops_per_s:g}" for n in primaries),
                ],
                "one shard fills (and evicts) first: look for big keys or a hash tag "
                "({...}) that puts one namespace in one slot; rebalance slots",
                ["closeup-ops keys --summary"],
            )
        ]
    return []


def activity_findings(nodes: list[Any], slowlog: Any, limits: Thresholds) -> list[Finding]:
    out = []
    if slowlog is not None and slowlog.commands:
        c = slowlog.commands[0]
        ns = f", keys in {', '.join(n for n, _ in c.namespaces)}" if c.namespaces else ""
        out.append(
            Finding(
                WARNING,
                "slow-commands",
                f"{slowlog.entries} slow command(s) in the window, most time in {c.command}",
                [
                    f"{s.command}: {s.count} x, {s.total_ms:g} ms in all, worst {s.max_ms:g} "
                    f"ms, from {', '.join(src for src, _ in s.sources)}"
                    + (f", keys in {', '.join(n for n, _ in s.namespaces)}" if s.namespaces else "")
                    for s in slowlog.commands[:3]
                ],
                f"a slow command blocks every other client meanwhile{ns}: replace it (SCAN "
                "for KEYS, smaller ranges, no big keys), or move it off the hot path",
            )
        )
    for n in nodes:
        if n.hit_rate is not None and n.hit_rate < limits.min_hit_rate:
            out.append(
                Finding(
                    WARNING,
                    "hit-rate",
                    f"{n.address}: hit rate {n.hit_rate:.1f}% now",
                    [
                        f"{n.hits_per_s:g} hits/s, {n.misses_per_s:g} misses/s over the last "
                        f"{n.interval_s:g} s (minimum {limits.min_hit_rate:g}%)"
                    ],
                    "requests miss the cache and go to the database: were keys evicted or "
                    "expired early, or did the key names change in a deploy?",
                    ["closeup-ops ttl --pattern 'NAMESPACE:*'"],
                )
            )
    return out


def aws_findings(cloudwatch: Any, events: Any, limits: Thresholds) -> list[Finding]:
    out = []
    if cloudwatch is not None:
        from closeup_ops.ops.aws.cloudwatch import judge

        for j in judge(cloudwatch, limits):
            if j.breached:
                out.append(
                    Finding(
                        CRITICAL if j.name == "throttled" else WARNING,
                        f"cloudwatch-{j.name}",
                        f"CloudWatch {j.name} over the window",
                        [j.evidence],
                        "see the trend in the CloudWatch table; `stats --watch` follows it live",
                        ["closeup-ops stats --watch"],
                    )
                )
    if events is not None:
        busy = [e for e in events.events if e.kind in BUSY_EVENTS]
        if busy:
            out.append(
                Finding(
                    WARNING,
                    "aws-event",
                    f"AWS: {busy[0].kind} at {busy[0].at}",
                    [f"{e.at} {e.source}: {e.message}" for e in busy[:3]],
                    "AWS replaced a node or failed over in the window: expect a burst of "
                    "reconnects and a cold replica; check that clients follow the primary",
                    ["closeup-ops events", "closeup-ops failover-test --trigger none"],
                )
            )
        urgent = [u for u in events.updates if u.severity in URGENT_UPDATES]
        if urgent:
            u = urgent[0]
            out.append(
                Finding(
                    WARNING,
                    "service-update",
                    f"{len(urgent)} {u.severity} service update(s) not applied",
                    [
                        f"{x.service_update} ({x.severity}, {x.status}, apply by "
                        f"{x.apply_by or '-'})"
                        for x in urgent[:3]
                    ],
                    "apply it in a quiet hour (AWS console or ApplyServiceUpdate), after a "
                    "snapshot",
                    ["closeup-ops snapshot create"],
                )
            )
    return out


def rank(findings: list[Finding]) -> list[Finding]:
    order = {CRITICAL: 0, WARNING: 1}
    return sorted(findings, key=lambda f: order.get(f.severity, 2))


def all_findings(
    nodes: list[Any] | None,
    cluster: bool,
    slowlog: Any,
    clients: Any,
    keys: Any,
    cloudwatch: Any,
    events: Any,
    limits: Thresholds,
) -> list[Finding]:
    found: list[Finding] = []
    nodes = nodes or []
    found += memory_findings(nodes, keys)
    found += client_findings(nodes, clients)
    found += replication_findings(nodes)
    found += shard_findings(nodes, cluster)
    found += activity_findings(nodes, slowlog, limits)
    found += key_findings(keys)
    found += aws_findings(cloudwatch, events, limits)
    return rank(found)
