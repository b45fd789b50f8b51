"""`sandbox up` and `sandbox down`: start the stand-ins, print how to reach them, stop them.

up                  redis-server primary + replica, moto (+ serverless APIs) seeded
up --cluster        + a 3-primary cluster
up --serverless     + a serverless stand-in (TLS, cluster mode, ACL user, reader port);
                    the exports point at it by its serverless endpoint name
up --bastion        + an OpenSSH bastion in front of the caches (a network namespace
                    where possible, else loopback)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from closeup_ops.errors import UsageError
from closeup_ops.local.cluster import start_cluster
from closeup_ops.local.servers import LOOPBACK, start_replicated
from closeup_ops.ops.sandbox.aws import (
    CACHE_NAME,
    aws_exports,
    require_moto,
    seed_aws,
    seed_cloudwatch,
    seed_serverless,
    start_aws,
)
from closeup_ops.ops.sandbox.state import (
    ProcessStatus,
    Sandbox,
    SandboxProcess,
    load_state,
    record,
    save_state,
    state_dir,
    state_file,
    status,
    stop_all,
)

SERVERLESS_CACHE = "demo"


def up(
    with_cluster: bool = False,
    with_aws: bool = True,
    with_serverless: bool = False,
    with_bastion: bool = False,
) -> Sandbox:
    """Start the sandbox; refuses when one is already recorded as running."""
    existing = load_state()
    if existing and any(s.running for s in status(existing)):
        raise UsageError(
            f"a sandbox is already running (state in {state_file()})",
            "use it, or stop it with `closeup-ops sandbox down`",
        )
    if existing:  # a sandbox whose processes all died: clear what it left (a namespace)
        _teardown(existing)
    _require_server(tls=with_serverless)
    if with_aws:
        require_moto()
    if with_bastion:
        _require_sshd()
    directory = state_dir() / "run"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    processes: list[SandboxProcess] = []
    sandbox = Sandbox(
        str(directory), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), processes, {}
    )
    try:
        _start_all(sandbox, directory, with_cluster, with_aws, with_serverless, with_bastion)
    except BaseException:
        _teardown(sandbox)
        state_file().unlink(missing_ok=True)
        raise
    save_state(sandbox)
    return sandbox


def _require_server(tls: bool) -> None:
    """A server binary, with TLS for the serverless stand-in (one line, exit 2, if not)."""
    from closeup_ops.local.engines import missing_features
    from closeup_ops.local.servers import redis_server_binary

    try:
        binary = redis_server_binary()
    except FileNotFoundError as exc:
        raise UsageError(str(exc), "then run `closeup-ops sandbox up` again") from None
    lacks = missing_features(binary).get("tls") if tls else None
    if lacks:
        raise UsageError(
            f"--serverless needs a server built with TLS: {lacks}",
            "install redis-server (apt-get install -y redis-server), or leave out --serverless",
        )


def _require_sshd() -> None:
    from closeup_ops.local.bastion import sshd_binary

    if not sshd_binary() or not shutil.which("ssh-keygen"):
        raise UsageError(
            "the sandbox's bastion needs OpenSSH's sshd and ssh-keygen",
            "apt-get install -y openssh-server openssh-client, or leave out --bastion",
        )


def _start_all(
    sandbox: Sandbox,
    directory: Path,
    with_cluster: bool,
    with_aws: bool,
    with_serverless: bool,
    with_bastion: bool,
) -> None:
    processes = sandbox.processes
    pair = start_replicated(
        directory / "replicated",
        "--enable-debug-command",
        "local",
        "--repl-diskless-sync-delay",  # the replica syncs now, not in 5 s
        "0",
        detach=True,
    )
    processes.append(record("primary", pair.primary.pid or 0, pair.primary.port))
    processes.append(record("replica", pair.replica.pid or 0, pair.replica.port))
    save_state(sandbox)  # after every start: a killed `up` leaves what `down` can stop
    sandbox.replicated = {"primary": pair.primary.address, "replica": pair.replica.address}
    sandbox.exports.update(REDIS_HOST=LOOPBACK, REDIS_PORT=str(pair.primary.port))
    import redis

    client = redis.Redis(host=LOOPBACK, port=pair.primary.port)
    try:
        seed_keys(client)
    finally:
        client.close()
    if with_cluster:
        cluster = start_cluster(directory / "cluster", 3, 1, detach=True)
        processes += [
            record(f"cluster-node{i}", n.pid or 0, n.port) for i, n in enumerate(cluster.nodes)
        ]
        sandbox.cluster_entry = cluster.entry.address
        save_state(sandbox)

    endpoint = None
    vpc = None
    if with_serverless:
        from closeup_ops.local.serverless import endpoint_name

        endpoint = endpoint_name(SERVERLESS_CACHE)
    if with_bastion:
        vpc = _make_vpc(sandbox, [endpoint] if endpoint else [])
    if with_serverless:
        assert endpoint is not None
        seeded = _start_serverless(sandbox, directory, endpoint, vpc)
    if with_aws:
        port, pid = start_aws(directory)
        processes.append(record("moto", pid, port))
        save_state(sandbox)
        url = f"http://{LOOPBACK}:{port}"
        sandbox.aws = seed_aws(url)
        sandbox.exports.update(aws_exports(url), ELASTICACHE_CACHE=CACHE_NAME)
        if sandbox.serverless:
            s = sandbox.serverless
            s["arn"] = seed_serverless(
                url, sandbox.aws, s["cache"], s["endpoint"], s["port"], s["reader_port"]
            )
            sandbox.aws["serverless_cache"] = s["cache"]
            seed_cloudwatch(url, s["cache"], *seeded)
            # empty = unset: the tool finds the cache from REDIS_HOST, as it would in AWS
            sandbox.exports["ELASTICACHE_CACHE"] = ""
    if with_bastion:
        _start_bastion(sandbox, directory, vpc)


def _make_vpc(sandbox: Sandbox, names: list[str]) -> dict[str, str] | None:
    from closeup_ops.local import bastion

    reason = bastion.netns_unavailable()
    if reason is not None:
        sandbox.notes.append(
            f"no network namespace here ({reason}): the bastion is an sshd on 127.0.0.1, "
            "which cannot resolve the serverless endpoint name; rehearse the tunnel "
            "with the replicated pair (REDIS_HOST=127.0.0.1)"
        )
        return None
    namespace, host_if, cache_ip, bastion_ip = bastion.make_vpc(names)
    sandbox.namespaces.append({"namespace": namespace, "host_veth": host_if})
    save_state(sandbox)
    return {"namespace": namespace, "cache_ip": cache_ip, "bastion_ip": bastion_ip}


def _start_serverless(
    sandbox: Sandbox, directory: Path, endpoint: str, vpc: dict[str, str] | None
) -> tuple[int, int]:
    """Start the stand-in and seed its keys; returns (used memory, keys) for CloudWatch."""
    from closeup_ops.local.serverless import Node, start_serverless

    def started(node: Node) -> None:
        sandbox.processes.append(record(node.role, node.pid, node.port))
        save_state(sandbox)

    s = start_serverless(
        directory / "serverless",
        endpoint,
        cache=SERVERLESS_CACHE,
        extra_binds=(vpc["cache_ip"],) if vpc else (),
        on_start=started,
    )
    if not s.announces_name:
        sandbox.notes.append(
            f"this server ({'.'.join(map(str, s.version))}) is older than 7.0 and cannot "
            "announce a hostname: CLUSTER SLOTS names an address, not the endpoint"
        )
    password_file = directory / "serverless" / "password"
    password_file.write_text(s.password)
    password_file.chmod(0o600)
    client = s.client()
    try:
        keys = seed_keys(client)
        used = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    sandbox.serverless = {
        "cache": s.cache,
        "endpoint": s.endpoint,
        "port": s.port,
        "reader_port": s.reader_port,
        "username": s.username,
        "ca_cert": str(s.tls.ca),
        "resolve": s.resolve,
    }
    sandbox.exports.update(
        REDIS_HOST=s.endpoint,
        REDIS_PORT=str(s.port),
        REDIS_USERNAME=s.username,
        REDIS_CA_CERT=str(s.tls.ca),
        REDIS_RESOLVE=s.resolve,
    )
    sandbox.secret_files["REDIS_PASSWORD"] = str(password_file)
    return used, keys


def _start_bastion(sandbox: Sandbox, directory: Path, vpc: dict[str, str] | None) -> None:
    from closeup_ops.local.bastion import start_sshd
    from closeup_ops.local.servers import free_port

    if vpc:
        host = start_sshd(
            directory / "bastion", vpc["bastion_ip"], 22, vpc["namespace"], vpc["cache_ip"]
        )
    else:
        host = start_sshd(directory / "bastion", LOOPBACK, free_port(), None, LOOPBACK)
    sandbox.processes.append(record("bastion", host.pid, host.port, host.host))
    sandbox.bastion = {
        "host": host.host,
        "port": host.port,
        "user": host.user,
        "namespace": vpc["namespace"] if vpc else None,
        "reaches_caches_at": host.cache_address,
    }
    sandbox.exports.update(
        BASTION_HOST=host.host,
        BASTION_PORT=str(host.port),
        BASTION_USER=host.user,
        BASTION_KEY=str(host.key),
        BASTION_KNOWN_HOSTS=str(host.known_hosts),
    )


def seed_keys(client: Any) -> int:
    """The guide's key shapes: OTPs (300 s), pending videos (1800 s), verified users (no TTL,
    on purpose: the walkthrough's `ttl --expect-max` finds them)."""
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"otp:user{i}", f"{100000 + i * 7919 % 900000}", ex=300)
    for i in range(50):
        pipe.set(f"video:pending:user{i}", f"job-{i}", ex=1800)
    for i in range(100):
        pipe.set(f"user:verified:user{i}", "1")
    pipe.execute()
    return 350


def _teardown(sandbox: Sandbox) -> list[ProcessStatus]:
    stopped = stop_all(sandbox.processes)
    from closeup_ops.local.bastion import delete_vpc

    for ns in sandbox.namespaces:
        delete_vpc(str(ns["namespace"]), ns.get("host_veth"))
    return stopped


def down() -> tuple[list[ProcessStatus], list[str]]:
    """Stop what `up` recorded, delete its namespaces and files. Returns (processes,
    namespaces deleted)."""
    sandbox = load_state()
    if sandbox is None:
        raise UsageError("no sandbox is recorded", "start one with `closeup-ops sandbox up`")
    stopped = _teardown(sandbox)
    state_file().unlink(missing_ok=True)
    shutil.rmtree(sandbox.directory, ignore_errors=True)
    return stopped, [str(ns["namespace"]) for ns in sandbox.namespaces]
