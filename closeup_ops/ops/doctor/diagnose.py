"""`doctor`: the guide's troubleshooting as ordered checks, each ok / warn / fail / skip with
one line of evidence and, for a fail, the fix.

The network steps (DNS, TCP, TLS) use plain sockets so each failure is told apart from the
next one (redis-py folds them all into ConnectionError); AUTH onwards uses redis-py with the
same connection settings as every other command. A check whose prerequisite did not pass is
"skip". Failed checks are data: nothing here raises for a failed check.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from closeup_ops.endpoint import parse as parse_endpoint
from closeup_ops.errors import UsageError
from closeup_ops.ops.doctor.net import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Check,
    Probe,
    check_dns,
    check_settings,
    check_tcp,
    check_tls,
    explain,
)
from closeup_ops.ops.engine import engine_of
from closeup_ops.settings import Settings

__all__ = ["Check", "DoctorReport", "Probe", "diagnose", "FAIL", "OK", "SKIP", "WARN"]


@dataclass
class DoctorReport:
    endpoint: str
    checks: list[Check]
    passed: bool
    counts: dict[str, int]


def check_auth(p: Probe) -> Check:
    import redis

    from closeup_ops.connect.redis import connection_kwargs

    s = p.settings
    kwargs = connection_kwargs(s)
    kwargs.setdefault("connection_class", redis.Connection)
    host = p.address or s.host  # what the DNS check resolved (or REDIS_RESOLVE named)
    pool = redis.ConnectionPool(host=host, port=s.port, db=0, **kwargs)
    p.client = redis.Redis(connection_pool=pool)
    try:
        p.client.ping()
    except redis.RedisError as exc:
        message, hint = explain(exc, s.endpoint)
        if "NOPERM" in str(exc).upper():
            return Check("auth", OK, "authenticated (PING is refused by ACL: see the ping check)")
        return Check("auth", FAIL, message, hint)
    if s.iam_auth:
        return Check("auth", OK, f"IAM token accepted for user {s.username}")
    if s.password:
        who = f"user {s.username}" if s.username else "the default user"
        return Check("auth", OK, f"AUTH accepted for {who}")
    if parse_endpoint(s.server_name).aws:
        return Check(
            "auth",
            WARN,
            "the cache accepts commands without AUTH: anyone who "
            "reaches the port can read and write",
            "enable an AUTH token or an RBAC user group on the cache",
        )
    return Check("auth", OK, "no password needed (the server did not ask for AUTH)")


def check_ping(p: Probe) -> Check:
    start = time.perf_counter()
    reply = p.client.ping()
    elapsed = (time.perf_counter() - start) * 1000
    if reply is not True:
        return Check("ping", FAIL, f"PING answered {reply!r}", "check this is a Redis server")
    return Check("ping", OK, f"PONG in {elapsed:.2f} ms")


def _cluster_info(client: Any) -> dict[str, str]:
    raw = client.execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def check_cluster(p: Probe) -> Check:
    s = p.settings
    enabled = bool(int(p.client.info("cluster").get("cluster_enabled", 0)))
    p.notes["cluster"] = enabled
    if not enabled:
        if s.cluster:
            return Check(
                "cluster",
                FAIL,
                "REDIS_CLUSTER=true but the server runs standalone",
                "unset REDIS_CLUSTER (auto) or set it to false",
            )
        if s.db:
            return _select(p.client, s.db)
        return Check("cluster", OK, "standalone; database 0")
    if s.db:
        return Check(
            "cluster",
            FAIL,
            f"REDIS_DB={s.db} but the server runs in cluster mode, "
            "which has only database 0 (SELECT is refused)",
            "unset REDIS_DB or set REDIS_DB=0",
        )
    try:
        info = _cluster_info(p.client)
    except Exception:  # some managed servers refuse CLUSTER INFO; INFO said cluster mode
        info = {"cluster_state": "ok", "cluster_size": "?"}
    state, size = info.get("cluster_state", "?"), info.get("cluster_size", "?")
    if state != "ok":
        return Check(
            "cluster",
            FAIL,
            f"cluster mode, cluster_state:{state} "
            f"({info.get('cluster_slots_ok', '?')} of 16384 slots ok)",
            "wait for the failover to finish, or check the nodes (CLUSTER NODES / "
            "the ElastiCache console)",
        )
    if s.cluster is False:
        return Check(
            "cluster",
            WARN,
            f"cluster mode ({size} primaries) but REDIS_CLUSTER="
            "false: keys in other slots answer MOVED",
            "unset REDIS_CLUSTER (auto) or set it to true",
        )
    return Check("cluster", OK, f"cluster mode, state ok, {size} primaries, database 0")


def _select(client: Any, db: int) -> Check:
    import redis

    try:
        client.execute_command("SELECT", db)
    except redis.ResponseError as exc:
        return Check(
            "cluster",
            FAIL,
            f"standalone, but SELECT {db} is refused ({str(exc).splitlines()[0]})",
            "set REDIS_DB to a database the server has (0 to `databases` - 1, usually 0-15)",
        )
    return Check("cluster", OK, f"standalone; database {db} selected")


def check_server(p: Probe) -> Check:
    info: dict[str, Any] = {}
    for section in ("server", "replication", "memory"):
        try:  # serverless answers only some sections
            info.update(p.client.info(section))
        except Exception:
            continue
    role = info.get("role", "?")
    parts = [str(engine_of(info)), f"role {role}"]
    if role == "master":
        parts[-1] += f" ({info.get('connected_slaves', 0)} replicas)"
    if "maxmemory" in info:
        limit = int(info["maxmemory"])
        parts.append(f"maxmemory {_bytes(limit) if limit else 'no limit'}")
    if info.get("maxmemory_policy"):
        parts.append(f"policy {info['maxmemory_policy']}")
    evidence = ", ".join(parts)
    if p.notes.get("cluster"):
        evidence += " (entry node)"
    if role == "slave":
        return Check(
            "server",
            WARN,
            evidence + ": REDIS_HOST is a read-only replica",
            "point REDIS_HOST at the primary (or configuration) endpoint",
        )
    if info.get("maxmemory_policy") == "noeviction" and int(info.get("maxmemory", 0)):
        return Check(
            "server",
            WARN,
            evidence + ": writes fail once memory is full",
            "use an eviction policy such as volatile-lru or allkeys-lru for a cache",
        )
    return Check("server", OK, evidence)


def _bytes(n: float) -> str:
    from closeup_ops.output import human_bytes

    return human_bytes(n)


# name, function, the check it needs to have passed (ok or warn)
STEPS: list[tuple[str, Callable[[Probe], Check], str | None]] = [
    ("settings", check_settings, None),
    ("dns", check_dns, None),
    ("tcp", check_tcp, "dns"),
    ("tls", check_tls, "tcp"),
    ("auth", check_auth, "tls"),
    ("ping", check_ping, "auth"),
    ("cluster", check_cluster, "ping"),
    ("server", check_server, "ping"),
]


def redis_checks(p: Probe) -> Iterator[Check]:
    passed: dict[str, bool] = {}
    for name, run, needs in STEPS:
        if needs and not passed.get(needs):
            check = Check(name, SKIP, f"skipped: needs the {needs} check to pass")
        else:
            try:
                check = run(p)
            except Exception as exc:  # a failed check is data, never a crash
                check = Check(name, FAIL, *explain(exc, p.settings.endpoint))
        passed[name] = check.status in (OK, WARN)
        yield check


def client_ip(p: Probe) -> str | None:
    """Our address as the cache sees it: the TCP check's, else the route's source address."""
    if p.local_ip or not p.address:
        return p.local_ip
    try:
        family = socket.AF_INET6 if ":" in p.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((p.address, p.settings.port))  # UDP connect sends nothing
            return sock.getsockname()[0]
    except OSError:
        return None


def diagnose(
    settings: Settings,
    aws: Callable[[str], Any] | None = None,
    client_sgs: list[str] | None = None,
    client_address: str | None = None,
    on_check: Callable[[Check], None] | None = None,
) -> DoctorReport:
    """Run every check in order. `aws(service)` returns a boto3 client (None: no AWS checks)."""
    from closeup_ops.ops.doctor.aws import aws_checks

    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if on_check:
            on_check(check)

    with ExitStack() as stack:
        probe = Probe(settings)
        if settings.via_bastion:
            local = _open_tunnel(settings, stack, add)
            probe = Probe(local) if local else probe
        if not settings.via_bastion or probe.settings is not settings:
            for check in redis_checks(probe):
                add(check)
        if probe.client is not None:
            probe.client.close()
        ip = client_address or client_ip(probe)
        for check in aws_checks(settings, aws, client_sgs or [], ip):
            add(check)
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL, SKIP)}
    return DoctorReport(settings.endpoint, checks, counts[FAIL] == 0, counts)


def _open_tunnel(settings: Settings, stack: ExitStack, add: Callable[[Check], None]):
    try:
        from closeup_ops.connect.tunnel.session import tunnelled

        local, _remap = stack.enter_context(tunnelled(settings))
    except UsageError:  # bad settings (e.g. no BASTION_HOST) exit 2, as for every command
        raise
    except Exception as exc:
        add(Check("tunnel", FAIL, *explain(exc)))
        for name, _run, _needs in STEPS:
            add(Check(name, SKIP, "skipped: needs the tunnel check to pass"))
        return None
    if settings.insecure and settings.use_tls:
        fix = "drop --insecure and set REDIS_CA_CERT to the CA bundle"
        add(Check("tunnel", WARN, _tunnel_evidence(settings, local), fix))
    else:
        add(Check("tunnel", OK, _tunnel_evidence(settings, local)))
    return local


def _tunnel_evidence(settings: Settings, local: Settings) -> str:
    """What the tunnel took over: the checks after it see only its plain local side."""
    said = f"through {settings.bastion_host}: {local.endpoint} -> {settings.endpoint}"
    if settings.use_tls and not local.use_tls and settings.insecure:
        said += "; TLS to the cache by the tunnel, --insecure: the certificate is NOT verified"
    elif settings.use_tls and not local.use_tls:
        said += f"; TLS to the cache verified by the tunnel for {settings.server_name}"
    if (settings.password or settings.iam_auth) and not (local.password or local.iam_auth):
        how = "an IAM token" if settings.iam_auth else "the password"
        said += f"; AUTH sent by the tunnel ({settings.username or 'default'} with {how})"
    return said
