"""`sandbox up|status|down`, driven as a user drives it: `closeup-ops` in a subprocess, its
printed export lines evaluated by bash, the user's commands run with them.

Expected values come from the test's own knowledge of what it asked for (the serverless
endpoint form, the seeded security group names, the ports the exports name) and from the
documented behaviour of serverless (TLS, cluster mode, KEYS refused, reader port)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from closeup_ops.endpoint import is_serverless

CO = f"{sys.executable} -m closeup_ops"
SCRUB = ("REDIS_", "ELASTICACHE_", "BASTION_", "AWS_", "CLOSEUP_OPS_ADDRESS")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is not alive
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"


class User:
    """A shell user: a clean environment, a state directory, the exports `up` printed."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
        self.env["XDG_STATE_HOME"] = str(home / "state")
        self.exports = ""

    def run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """`command` in bash after `eval "$(the exports)"` (closeup-ops is $CO)."""
        script = f'eval "$EXPORTS"\nCO="{CO}"\n{command}'
        env = dict(self.env, EXPORTS=self.exports)
        return subprocess.run(
            ["bash", "-c", script],
            env=env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def co(self, args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return self.run(f"$CO {args}", timeout)

    def var(self, name: str) -> str:
        return self.run(f'printf %s "${name}"').stdout


def _netns_ready() -> bool:
    from closeup_ops.local.bastion import netns_unavailable, sshd_binary

    return sshd_binary() is not None and netns_unavailable() is None


@pytest.fixture(scope="module")
def serverless(tmp_path_factory):
    """`sandbox up --serverless --bastion`; the last test takes it down and checks."""
    pytest.importorskip("moto")
    from closeup_ops.local.bastion import sshd_binary

    if not sshd_binary():
        pytest.skip("sshd is not installed")
    user = User(tmp_path_factory.mktemp("sandbox-user"))
    up = user.co("sandbox up --serverless --bastion")
    assert up.returncode == 0, up.stderr
    user.exports = up.stdout
    user.up_err = up.stderr
    status = user.co("sandbox status --json")
    assert status.returncode == 0, status.stderr + status.stdout
    user.processes = json.loads(status.stdout)["processes"]
    state = json.loads((user.home / "state/closeup-ops/sandbox/state.json").read_text())
    user.namespaces = [n["namespace"] for n in state["namespaces"]]
    yield user
    if (user.home / "state/closeup-ops/sandbox/state.json").exists():
        user.co("sandbox down")


@pytest.mark.slow
def test_exports_name_a_serverless_endpoint(serverless):
    host, port = serverless.var("REDIS_HOST"), serverless.var("REDIS_PORT")
    assert is_serverless(host) and host.startswith("demo-")
    reader = [p["port"] for p in serverless.processes if p["role"] == "serverless-reader"][0]
    resolve = serverless.var("REDIS_RESOLVE").split(",")
    assert sorted(resolve) == sorted([f"{host}:{port}:127.0.0.1", f"{host}:{reader}:127.0.0.1"])
    assert serverless.var("REDIS_USERNAME") and serverless.var("REDIS_CA_CERT")
    assert serverless.var("ELASTICACHE_CACHE") == ""  # found from REDIS_HOST, as in AWS
    # the password reaches the shell through its file, never through what `up` printed
    password = serverless.var("REDIS_PASSWORD")
    assert len(password) >= 16
    assert password not in serverless.exports and password not in serverless.up_err
    assert re.search(r'^export REDIS_PASSWORD="\$\(cat .+\)"$', serverless.exports, re.M)


@pytest.mark.slow
def test_ping_over_tls_in_cluster_mode(serverless):
    r = serverless.co("ping --json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tls"] is True and doc["cluster"] is True
    assert doc["nodes"][0]["replicas"] == 1
    # the reader port answers too, as a replica
    reader = [p["port"] for p in serverless.processes if p["role"] == "serverless-reader"][0]
    r = serverless.co(f"ping --port {reader} --json")
    assert r.returncode == 0, r.stderr


def _raw(user: User, port: int | None = None, **kw):
    """A redis-py client on a stand-in node, TLS verified for the endpoint name."""
    import redis

    host = user.var("REDIS_HOST")
    return redis.Redis(
        host="127.0.0.1",
        port=port or int(user.var("REDIS_PORT")),
        ssl=True,
        ssl_ca_certs=user.var("REDIS_CA_CERT"),
        ssl_check_hostname=False,
        socket_timeout=10,
        **kw,
    ), host


@pytest.mark.slow
def test_cluster_announces_the_endpoint_name_and_the_reader(serverless):
    client, host = _raw(
        serverless,
        username=serverless.var("REDIS_USERNAME"),
        password=serverless.var("REDIS_PASSWORD"),
    )
    reader = [p["port"] for p in serverless.processes if p["role"] == "serverless-reader"][0]
    slots = client.execute_command("CLUSTER", "SLOTS")
    assert len(slots) == 1 and (slots[0][0], slots[0][1]) == (0, 16383)
    nodes = [(n[0].decode(), n[1]) for n in slots[0][2:]]
    assert nodes == [(host, int(serverless.var("REDIS_PORT"))), (host, reader)]
    replica, _ = _raw(
        serverless,
        reader,
        username=serverless.var("REDIS_USERNAME"),
        password=serverless.var("REDIS_PASSWORD"),
    )
    assert replica.info("replication")["role"] == "slave"
    client.close()
    replica.close()


@pytest.mark.slow
def test_certificate_is_for_the_endpoint_name(serverless):
    import socket
    import ssl

    context = ssl.create_default_context(cafile=serverless.var("REDIS_CA_CERT"))
    port = int(serverless.var("REDIS_PORT"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=serverless.var("REDIS_HOST")) as tls:
            assert tls.version()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="other.serverless.use1.cache.amazonaws.com")


@pytest.mark.slow
def test_default_user_is_off_and_keys_is_refused(serverless):
    import redis

    # the default user is switched off: without the user and password, nothing
    r = serverless.run("unset REDIS_USERNAME REDIS_PASSWORD; $CO ping --no-cluster")
    assert r.returncode == 4, r.stderr
    assert "NOAUTH" in r.stderr and len(r.stderr.splitlines()) == 1
    client, _ = _raw(
        serverless,
        username=serverless.var("REDIS_USERNAME"),
        password=serverless.var("REDIS_PASSWORD"),
    )
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("KEYS", "*")
    # and what ElastiCache restricts on every cache (AWS docs: "Restricted commands")
    for command in (("CONFIG", "GET", "maxmemory"), ("DEBUG", "SLEEP", "0"), ("BGSAVE",)):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)
    client.close()
    # the tool SCANs, so `keys` works where KEYS does not
    r = serverless.co("keys 'otp:*' --limit 3 --json")
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_default_user_off_in_cluster_mode_is_an_auth_error(serverless):
    r = serverless.run("unset REDIS_USERNAME REDIS_PASSWORD; $CO ping")
    assert r.returncode == 4, r.stderr


@pytest.mark.slow
def test_aws_describes_the_stand_in(serverless):
    import botocore.session

    session = botocore.session.get_session()
    kw = dict(
        region_name=serverless.var("AWS_REGION"),
        endpoint_url=serverless.var("AWS_ENDPOINT_URL"),
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    ec = session.create_client("elasticache", **kw)
    ec2 = session.create_client("ec2", **kw)
    caches = ec.describe_serverless_caches()["ServerlessCaches"]
    assert [c["ServerlessCacheName"] for c in caches] == ["demo"]
    cache = caches[0]
    reader = [p["port"] for p in serverless.processes if p["role"] == "serverless-reader"][0]
    assert cache["Status"] == "available"
    assert cache["Endpoint"] == {
        "Address": serverless.var("REDIS_HOST"),
        "Port": int(serverless.var("REDIS_PORT")),
    }
    assert cache["ReaderEndpoint"]["Port"] == reader
    groups = ec2.describe_security_groups(GroupIds=cache["SecurityGroupIds"])["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["closeup-cache"]
    subnets = ec2.describe_subnets(SubnetIds=cache["SubnetIds"])["Subnets"]
    assert len(subnets) == 2 and len({s["AvailabilityZone"] for s in subnets}) == 2


def _app_sg(user: User) -> str:
    import botocore.session

    ec2 = botocore.session.get_session().create_client(
        "ec2",
        region_name=user.var("AWS_REGION"),
        endpoint_url=user.var("AWS_ENDPOINT_URL"),
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    groups = ec2.describe_security_groups(GroupNames=["closeup-api"])["SecurityGroups"]
    return groups[0]["GroupId"]


@pytest.mark.slow
def test_aws_commands_run_on_serverless_without_a_warning(serverless):
    steps = [
        ("caches --json", 0),
        ("snapshot create --name demo-rehearsal --wait --json", 0),
        ("snapshot list --json", 0),
        ("snapshot restore demo-rehearsal --target demo-copy --wait --json", 0),
        ("snapshot delete demo-rehearsal --yes --json", 0),
        (f"sg allow --from-sg {_app_sg(serverless)} --json", 0),
        ("sg show --json", 0),
        ("doctor --json", 0),
        ("doctor --cache demo --json", 0),  # by name as well as from REDIS_HOST
        ("stats --json", 0),
        ("events --json", 0),
    ]
    out = {}
    for args, want in steps:
        r = serverless.co(args)
        assert r.returncode == want, f"{args}: {r.stderr}"
        assert "warning" not in r.stderr.lower(), f"{args}: {r.stderr}"
        out[args.removesuffix(" --json")] = json.loads(r.stdout)
    caches = {c["name"]: c for c in out["caches"]}
    assert caches["demo"]["kind"] == "serverless"
    listed = {s["name"]: s for s in out["snapshot list"]}
    assert listed["demo-rehearsal"]["kind"] == "serverless"
    assert listed["demo-rehearsal"]["status"] == "available"
    restored = out["snapshot restore demo-rehearsal --target demo-copy --wait"]
    assert restored["kind"] == "serverless" and restored["status"] == "available"
    assert restored["copied_from"] == "demo"
    r = serverless.co("caches --json")
    names = {c["name"]: c["kind"] for c in json.loads(r.stdout)}
    assert names["demo-copy"] == "serverless"
    events = [e["message"] for e in out["events"]["events"]]
    assert "Snapshot demo-rehearsal completed" in events
    for run in ("doctor", "doctor --cache demo"):
        doctor = {c["name"]: c["status"] for c in out[run]["checks"]}
        assert doctor["aws-cache"] == doctor["backups"] == doctor["alarms"] == "ok", run


@pytest.mark.slow
def test_tunnel_goes_through_the_bastion(serverless):
    if not serverless.namespaces:
        pytest.skip("no network namespace here: the bastion runs on loopback")
    bastion = serverless.var("BASTION_HOST")
    assert serverless.var("BASTION_KEY") and serverless.var("BASTION_KNOWN_HOSTS")
    r = serverless.co("ping --via-bastion --json")
    assert r.returncode == 0, r.stderr
    # the any-client tunnel: a plain redis-cli through it; the cache sees the connection
    # come from the bastion's address in the VPC namespace, not from this machine
    r = serverless.co("tunnel -- bash -c 'redis-cli -p \"$REDIS_PORT\" CLIENT INFO'")
    assert r.returncode == 0, r.stderr
    assert f"addr={bastion}:" in r.stdout, r.stdout  # the bastion's own address
    assert "addr=127.0.0.1" not in r.stdout


@pytest.mark.slow
def test_down_leaves_no_process_and_no_namespace(serverless):
    pids = [p["pid"] for p in serverless.processes]
    r = serverless.co("sandbox down --json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["stopped"]) == len(pids) and all(s["running"] for s in doc["stopped"])
    assert doc["namespaces"] == serverless.namespaces
    assert not [pid for pid in pids if _alive(pid)]
    assert _running_under(serverless.home) == []
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in serverless.namespaces:
        assert ns not in left
        assert not Path(f"/etc/netns/{ns}").exists()
        veth = "csbh" + ns.removeprefix("cuosbx")
        links = subprocess.run(["ip", "link", "show", veth], capture_output=True, text=True)
        assert links.returncode != 0
    r = serverless.co("sandbox status")
    assert r.returncode == 2 and "no sandbox" in r.stderr


@pytest.mark.slow
def test_up_status_down(cli):
    pytest.importorskip("moto")
    r = cli("sandbox", "up", "--cluster", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    pids = [p["pid"] for p in doc["processes"]]
    roles = [p["role"] for p in doc["processes"]]
    try:
        assert roles[:2] == ["primary", "replica"] and "moto" in roles
        assert sum(role.startswith("cluster-node") for role in roles) == 6
        exports = doc["exports"]
        assert exports["ELASTICACHE_CACHE"] == "sandbox-rg"

        # the exports point every command at it: Redis ...
        r = cli("ping", "--json", env=exports)
        assert r.code == 0, r.err
        assert r.json()["nodes"][0]["replicas"] == 1
        # ... and the mocked AWS account, seeded
        import boto3

        ec = boto3.client(
            "elasticache",
            region_name=exports["AWS_REGION"],
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        groups = ec.describe_replication_groups()["ReplicationGroups"]
        assert [g["ReplicationGroupId"] for g in groups] == ["sandbox-rg"]
        snaps = ec.describe_snapshots()["Snapshots"]
        assert [s["SnapshotName"] for s in snaps] == ["sandbox-rg-seed"]
        # no serverless cache without --serverless, and no warning for asking
        assert ec.describe_serverless_caches()["ServerlessCaches"] == []
        r = cli("caches", env=exports)
        assert r.code == 0 and "warning" not in r.err

        r = cli("sandbox", "status", "--json")
        assert r.code == 0, r.err
        assert all(p["running"] and p["answering"] for p in r.json()["processes"])

        # a second `up` refuses instead of starting a second set
        r = cli("sandbox", "up", "--no-aws")
        assert r.code == 2 and "already running" in r.err
    finally:
        r = cli("sandbox", "down", "--json")
    assert r.code == 0, r.err
    assert len(r.json()["stopped"]) == len(pids)
    assert not [pid for pid in pids if _alive(pid)]
    r = cli("sandbox", "status")
    assert r.code == 2 and "no sandbox" in r.err


@pytest.mark.slow
def test_bastion_on_loopback_where_there_is_no_namespace(cli, monkeypatch):
    """Without root or netns the bastion is an sshd on 127.0.0.1, with a note; the tunnel
    can still be rehearsed against the replicated pair, by address."""
    from closeup_ops.local import bastion

    if not bastion.sshd_binary():
        pytest.skip("sshd is not installed")
    monkeypatch.setattr(bastion, "netns_unavailable", lambda: "pretend: not root")
    r = cli("sandbox", "up", "--bastion", "--no-aws", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    pids = [p["pid"] for p in doc["processes"]]
    try:
        assert doc["namespaces"] == [] and "no network namespace" in " ".join(doc["notes"])
        exports = doc["exports"]
        assert exports["BASTION_HOST"] == "127.0.0.1"
        r = cli("ping", "--via-bastion", "--json", env=exports)
        assert r.code == 0, r.err
    finally:
        r = cli("sandbox", "down", "--json")
    assert r.code == 0
    assert not [pid for pid in pids if _alive(pid)]


def test_without_moto_says_what_to_install(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "moto.server", None)
    r = cli("sandbox", "up")
    assert r.code == 2
    assert "closeup-ops[sandbox]" in r.err and len(r.err_lines) == 1


def test_moto_is_not_a_runtime_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    assert "moto" not in runtime
    assert any("moto" in dep for dep in project["project"]["optional-dependencies"]["sandbox"])


def test_serverless_needs_a_tls_build(cli, monkeypatch):
    from closeup_ops.local import engines

    monkeypatch.setattr(engines, "missing_features", lambda binary: {"tls": "built without"})
    r = cli("sandbox", "up", "--serverless", "--no-aws")
    assert r.code == 2 and len(r.err_lines) == 1
    assert "needs a server built with TLS" in r.err and "apt-get install" in r.err


def test_bastion_needs_sshd(cli, monkeypatch):
    from closeup_ops.local import bastion

    monkeypatch.setattr(bastion, "sshd_binary", lambda: None)
    r = cli("sandbox", "up", "--bastion", "--no-aws")
    assert r.code == 2 and len(r.err_lines) == 1 and "openssh-server" in r.err


def test_stale_exports_do_not_block_the_sandbox_commands(cli, tmp_path):
    # after `sandbox down`, the shell still names the deleted CA file: status still answers
    r = cli("sandbox", "status", env={"REDIS_CA_CERT": str(tmp_path / "gone.crt")})
    assert r.code == 2 and "no sandbox is recorded" in r.err


def test_down_without_sandbox(cli):
    r = cli("sandbox", "down")
    assert r.code == 2 and "sandbox up" in r.err


@pytest.mark.slow
def test_a_killed_up_leaves_what_down_can_stop(tmp_path):
    """`up` records each process as it starts: SIGKILL it half-way and `down` still stops
    what did start (and deletes a namespace it made)."""
    import signal
    import time

    pytest.importorskip("moto")
    user = User(tmp_path)
    state = tmp_path / "state/closeup-ops/sandbox/state.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "closeup_ops", "sandbox", "up", "--serverless"],
        env=user.env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60

    def recorded() -> list[dict]:
        try:
            return json.loads(state.read_text())["processes"]
        except (OSError, ValueError):
            return []

    while len(recorded()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    # still starting the serverless stand-in (its cluster takes seconds to settle)
    assert proc.poll() is None, "up ended before anything was recorded"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    pids = [p["pid"] for p in recorded()]
    assert pids, "up recorded nothing before it was killed"
    r = user.co("sandbox down --json")
    assert r.returncode == 0, r.stderr
    assert not [pid for pid in pids if _alive(pid)]
    # nor anything else this sandbox started (each one names its files here, or runs here)
    left = _running_under(tmp_path)
    for pid in left:  # by PID, so that a failure here leaks nothing into later tests
        os.kill(pid, signal.SIGKILL)
    assert left == [], "started by the killed `up`, not stopped by `down`"


def _running_under(path: Path) -> list[int]:
    """Processes whose command line names `path` or whose working directory is under it:
    redis-server rewrites its command line ("redis-server 127.0.0.1:7001"), so a node the
    sandbox started shows only by its working directory (its node directory)."""
    found = []
    inside = str(path.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            continue
        cwd, cmdline = _cwd_and_cmdline(entry)
        if str(path).encode() in cmdline or cwd == inside or cwd.startswith(inside + "/"):
            found.append(int(entry.name))
    return found


def _cwd_and_cmdline(entry: Path) -> tuple[str, bytes]:
    """("", b"") for what went away meanwhile (or is not ours to read)."""
    try:
        cwd = os.readlink(entry / "cwd")
    except OSError:
        cwd = ""
    try:
        return cwd, (entry / "cmdline").read_bytes()
    except OSError:
        return cwd, b""
