"""`tunnel` and `--via-bastion` through a real OpenSSH sshd on loopback: plain, TLS (hostname
verified through the tunnel), the 3-primary cluster, drop-and-reconnect, and the errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from helpers.bastion import CLOSEUP_OPS, HeldTunnel, bastion_env
from helpers.common import server_env
from helpers.sshd import keygen, start_sshd
from redis.backoff import NoBackoff
from redis.retry import Retry

from closeup_ops.local.certs import make_tls_files
from closeup_ops.local.servers import free_port, start_redis

# The child writes its REDIS_* environment to the file named by its first argument.
PRINT_ENV = (
    "import os, sys; open(sys.argv[1], 'w').write(' '.join(f'{k}={os.environ.get(k)}' "
    "for k in ('REDIS_HOST','REDIS_PORT','REDIS_TLS','REDIS_TLS_SERVER_NAME',"
    "'REDIS_CLUSTER','REDIS_URL','REDIS_PASSWORD'))); sys.exit(7)"
)


@pytest.fixture(params=["openssh", "paramiko"])
def engine(request, monkeypatch):
    """Both forward engines: OpenSSH (the default) and the pure-Python fallback."""
    monkeypatch.setenv("CLOSEUP_OPS_TUNNEL_ENGINE", request.param)
    return request.param


def env_for(server, sshd, **more):
    return {**server_env(server), **bastion_env(sshd), **more}


def test_ping_via_bastion_plain(cli, redis_plain, sshd, engine):
    before = sshd.forwards_to(redis_plain.port)
    r = cli("ping", "--via-bastion", "--json", env=env_for(redis_plain, sshd))
    assert r.code == 0, r.err
    assert r.json()["reply"] == "PONG"
    # the PING went through the bastion, not straight to the loopback server
    assert sshd.forwards_to(redis_plain.port) > before


def test_tunnel_runs_command_with_env_and_returns_its_exit_code(cli, redis_plain, sshd, tmp_path):
    r = cli(
        "tunnel",
        "--",
        sys.executable,
        "-c",
        PRINT_ENV,
        str(tmp_path / "env"),
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 7, r.err
    out = dict(item.split("=", 1) for item in (tmp_path / "env").read_text().split())
    assert out["REDIS_HOST"] == "127.0.0.1" and out["REDIS_TLS"] == "false"
    assert out["REDIS_URL"] == f"redis://127.0.0.1:{out['REDIS_PORT']}"
    assert out["REDIS_CLUSTER"] == "None"  # a standalone cache


def test_tunnel_runs_closeup_ops_through_it(cli, redis_plain, sshd, tmp_path):
    out = tmp_path / "ping.json"
    r = cli(
        "tunnel",
        "--",
        "sh",
        "-c",
        f"{CLOSEUP_OPS} ping --json > {out}",
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 0, r.err
    assert '"reply": "PONG"' in out.read_text()


def test_tunnel_missing_command_is_127(cli, redis_plain, sshd):
    r = cli("tunnel", "--", "no-such-command-t5", env=env_for(redis_plain, sshd))
    assert r.code == 127
    assert "command not found" in r.err


def test_cache_port_taken_locally_picks_a_free_port_and_says_so(cli, redis_plain, sshd, tmp_path):
    # redis_plain itself holds its port on this machine, as a local Redis would.
    r = cli(
        "tunnel",
        "--",
        sys.executable,
        "-c",
        PRINT_ENV,
        str(tmp_path / "env"),
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 7
    assert f"local port {redis_plain.port} is in use; the tunnel listens on 127.0.0.1:" in r.err
    assert f"REDIS_PORT={redis_plain.port}" not in (tmp_path / "env").read_text()


def test_explicit_local_port_taken_is_a_usage_error(cli, redis_plain, sshd):
    r = cli(
        "tunnel",
        "--local-port",
        str(redis_plain.port),
        "--",
        "true",
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 2
    assert "already in use" in r.err and len(r.err_lines) == 1


def test_explicit_local_port_is_used(cli, redis_plain, sshd, tmp_path):
    port = free_port()
    r = cli(
        "tunnel",
        "--local-port",
        str(port),
        "--",
        sys.executable,
        "-c",
        PRINT_ENV,
        str(tmp_path / "env"),
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 7, r.err
    assert f"REDIS_PORT={port}" in (tmp_path / "env").read_text()


# --- TLS: the certificate is checked against the real endpoint name, not 127.0.0.1 ---------


def tls_env(server, sshd, tls_files, **more):
    return env_for(server, sshd, REDIS_TLS="true", REDIS_CA_CERT=str(tls_files.ca), **more)


def test_tls_through_tunnel_verifies_the_endpoint_name(cli, redis_tls, tls_files, sshd, tmp_path):
    # REDIS_HOST=localhost: the bastion resolves it; we dial 127.0.0.1 and check "localhost".
    env = tls_env(redis_tls, sshd, tls_files, REDIS_HOST="localhost")
    r = cli("ping", "--via-bastion", "--json", env=env)
    assert r.code == 0, r.err
    assert r.json()["tls"] is True
    r = cli("tunnel", "--", sys.executable, "-c", PRINT_ENV, str(tmp_path / "env"), env=env)
    assert r.code == 7
    # The tunnel speaks TLS to the cache; the child gets the plain local side.
    out = (tmp_path / "env").read_text()
    assert "REDIS_TLS=false REDIS_TLS_SERVER_NAME=None" in out
    port = out.split("REDIS_PORT=")[1].split()[0]
    assert f"REDIS_URL=redis://127.0.0.1:{port}" in out


def test_doctor_via_bastion_says_the_tunnel_did_tls(cli, redis_tls, tls_files, sshd):
    # the checks after the tunnel see its plain local side: the tunnel's line says who did TLS
    env = tls_env(redis_tls, sshd, tls_files, REDIS_HOST="localhost")
    r = cli("doctor", "--via-bastion", "--json", env=env)
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["tunnel"]["status"] == "ok", checks["tunnel"]
    assert "TLS to the cache verified by the tunnel for localhost" in checks["tunnel"]["evidence"]


def test_tls_wrong_name_fails_through_tunnel(cli, redis_tls, tls_files, sshd):
    env = tls_env(redis_tls, sshd, tls_files, REDIS_TLS_SERVER_NAME="not-in-the-cert.example")
    r = cli("ping", "--via-bastion", env=env)
    assert r.code == 3
    assert "certificate" in r.err and len(r.err_lines) == 1


@pytest.fixture(scope="module")
def redis_tls_named_only(tmp_path_factory):
    """A TLS server whose certificate names only cache.closeup.test (no IP, no localhost):
    verifying against 127.0.0.1, the address we dial, would fail."""
    files = make_tls_files(
        tmp_path_factory.mktemp("tls-named"), names=("cache.closeup.test",), ips=()
    )
    server = start_redis(tmp_path_factory.mktemp("tls-named-server"), tls=files)
    yield server, files
    server.stop()


def test_tls_named_certificate_through_tunnel(cli, redis_tls_named_only, sshd, engine):
    server, files = redis_tls_named_only
    env = tls_env(server, sshd, files, REDIS_TLS_SERVER_NAME="cache.closeup.test")
    r = cli("ping", "--via-bastion", "--json", env=env)
    assert r.code == 0, r.err
    # Without the name the same tunnel fails: proof the name, not 127.0.0.1, was verified.
    env.pop("REDIS_TLS_SERVER_NAME")
    assert cli("ping", "--via-bastion", env=env).code == 3


# --- cluster: a forward per node, address remap, keys in every slot range ------------------


def test_cluster_via_bastion_pings_every_primary(cli, redis_cluster, sshd):
    primaries = [n.port for n in redis_cluster.primaries()]
    before = {p: sshd.forwards_to(p) for p in primaries}
    r = cli("ping", "--via-bastion", "--json", env=env_for(redis_cluster.entry, sshd))
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["cluster"] is True and len(doc["nodes"]) == 3
    # every primary was reached through the bastion
    assert all(sshd.forwards_to(p) > before[p] for p in primaries), before


def test_cluster_keys_in_every_slot_range_and_moved(redis_cluster, sshd, monkeypatch, engine):
    from closeup_ops.connect.redis import connect
    from closeup_ops.connect.tunnel.session import tunnelled
    from closeup_ops.settings import load

    for key, value in env_for(redis_cluster.entry, sshd).items():
        monkeypatch.setenv(key, value)
    settings = load({"via_bastion": True})
    keys = [f"t5:tunnel:{i}" for i in range(60)]
    node_ports = {n.port for n in redis_cluster.nodes}
    with tunnelled(settings) as (local, _):
        assert local.host == "127.0.0.1" and local.cluster is True
        target = connect(local)  # a cluster client from the settings alone: no remap
        try:
            for key in keys:
                target.client.set(key, key, ex=120)
            assert [target.client.get(k) for k in keys] == [k.encode() for k in keys]
            # Every node the client was handed is a local listener, not a cache address.
            seen = {(n.host, n.port) for n in target.client.get_nodes()}
            assert all(h == "127.0.0.1" and p not in node_ports for h, p in seen), seen
            # MOVED: ask the entry listener for a key its node does not own; the redirect
            # names another local listener, which serves it.
            plain = redis.Redis(host=local.host, port=local.port)
            redirected = 0
            for key in keys:
                try:
                    assert plain.get(key) == key.encode()
                except redis.ResponseError as exc:
                    host, port = str(exc).split()[-1].rsplit(":", 1)
                    assert host == "127.0.0.1" and int(port) not in node_ports, str(exc)
                    assert redis.Redis(host=host, port=int(port)).get(key) == key.encode()
                    redirected += 1
            assert redirected > 0
            plain.close()
            # Every primary holds some of them: all three slot ranges went through the tunnel.
            for node in redis_cluster.primaries():
                direct = redis.Redis(host=node.host, port=node.port)
                assert list(direct.scan_iter(match="t5:tunnel:*", count=1000)), node.address
                direct.close()
        finally:
            target.client.delete(*keys)
            target.close()


def test_tunnel_prints_cluster_mapping(redis_cluster, sshd, engine):
    held = HeldTunnel(env_for(redis_cluster.entry, sshd))
    try:
        doc = held.doc
        assert doc["cluster"] is True
        assert len(doc["nodes"]) == 6  # 3 primaries + 3 replicas, each forwarded
        assert doc["exports"]["REDIS_CLUSTER"] == "true"
        assert redis.Redis(port=held.port).ping()
    finally:
        assert held.interrupt() == 0


# --- holding, Ctrl-C, and the session dropping ----------------------------------------------


def test_tunnel_holds_until_ctrl_c(redis_plain, sshd, engine):
    held = HeldTunnel(env_for(redis_plain, sshd))
    try:
        assert held.doc["local"].startswith("127.0.0.1:")
        assert held.doc["engine"] == engine
        assert held.doc["exports"]["REDIS_HOST"] == "127.0.0.1"
        assert redis.Redis(port=held.port).ping()
    finally:
        code = held.interrupt()
    assert code == 0
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=held.port, socket_connect_timeout=2).ping()


@pytest.fixture
def own_sshd(tmp_path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


def test_session_drop_reconnects(redis_plain, own_sshd, engine):
    from closeup_ops.errors import classify

    held = HeldTunnel(env_for(redis_plain, own_sshd))
    try:
        no_retry = Retry(NoBackoff(), 0)  # redis-py would otherwise quietly reconnect
        before = redis.Redis(port=held.port, socket_timeout=5, retry=no_retry)
        assert before.ping()
        assert own_sshd.kill_sessions() >= 1
        held.wait_for_err("dropped")
        # In flight: the connection made before the drop fails, and maps to exit 3.
        with pytest.raises(redis.ConnectionError) as info:
            before.ping()
        assert classify(info.value, "127.0.0.1").exit_code == 3
        held.wait_for_err("tunnel is back")
        after = redis.Redis(port=held.port, socket_timeout=5)  # same local port
        assert after.ping()
    finally:
        assert held.interrupt() == 0


# --- errors: one line, exit 3 or 4, what to do next -----------------------------------------


def one_line(r, code, *needles):
    assert r.code == code, (r.code, r.err)
    assert len(r.err_lines) == 1, r.err
    assert "Traceback" not in r.err
    for needle in needles:
        assert needle in r.err, r.err


def test_error_no_bastion_host(cli, redis_plain):
    one_line(cli("ping", "--via-bastion", env=server_env(redis_plain)), 2, "BASTION_HOST")


def test_error_bastion_unreachable(cli, redis_plain, sshd):
    env = env_for(redis_plain, sshd, BASTION_PORT=str(free_port()))
    one_line(cli("ping", "--via-bastion", env=env), 3, "cannot reach bastion", "BASTION_HOST")


def test_error_auth_refused(cli, redis_plain, sshd, tmp_path):
    stranger = keygen(tmp_path / "stranger")
    env = env_for(redis_plain, sshd, BASTION_KEY=str(stranger))
    one_line(cli("ping", "--via-bastion", env=env), 4, "refused the SSH login", "authorized_keys")


def test_error_key_missing(cli, redis_plain, sshd, tmp_path):
    env = env_for(redis_plain, sshd, BASTION_KEY=str(tmp_path / "nope.pem"))
    # a bad setting, like a missing REDIS_CA_CERT: exit 2 before anything is dialled
    one_line(cli("ping", "--via-bastion", env=env), 2, "BASTION_KEY", "private key file")


def test_error_key_bad_permissions(cli, redis_plain, sshd, tmp_path):
    key = tmp_path / "loose.pem"
    key.write_bytes(sshd.client_key.read_bytes())
    key.chmod(0o644)
    env = env_for(redis_plain, sshd, BASTION_KEY=str(key))
    one_line(cli("ping", "--via-bastion", env=env), 4, "readable by others", "chmod 600")


def test_error_forwarding_refused(cli, redis_plain, tmp_path):
    # A Match block overrides the fixture's global AllowTcpForwarding yes.
    server = start_sshd(tmp_path / "noforward", extra_config="Match all\n  AllowTcpForwarding no\n")
    try:
        r = cli("ping", "--via-bastion", env=env_for(redis_plain, server))
        one_line(r, 4, "refused to forward", "AllowTcpForwarding")
    finally:
        server.stop()


def test_error_cache_unreachable_from_bastion(cli, sshd):
    env = {**bastion_env(sshd), "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())}
    one_line(cli("ping", "--via-bastion", env=env), 3, "cannot open", "security group")


def test_unknown_host_key_refused_with_fingerprint_then_accepted(cli, redis_plain, sshd, tmp_path):
    known = tmp_path / "ssh" / "known_hosts"
    env = env_for(redis_plain, sshd, BASTION_KNOWN_HOSTS=str(known))
    r = cli("tunnel", "--", "true", env=env)
    one_line(r, 4, "is not in", "SHA256:", "--accept-new-host-key")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.host_key_pub)], capture_output=True, text=True
    ).stdout.split()[1]
    assert fingerprint in r.err
    r = cli("tunnel", "--accept-new-host-key", "--", "true", env=env)
    assert r.code == 0, r.err
    assert "added the host key" in r.err
    assert sshd.host_key_pub.read_text().split()[1] in known.read_text()
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert cli("ping", "--via-bastion", env=env).code == 0  # now known


def test_changed_host_key_refused_even_with_accept_new(cli, redis_plain, sshd, tmp_path):
    other = keygen(tmp_path / "other_host_key")
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.host}]:{sshd.port} {kind} {blob}\n")
    env = env_for(redis_plain, sshd, BASTION_KNOWN_HOSTS=str(known))
    r = cli("tunnel", "--accept-new-host-key", "--", "true", env=env)
    one_line(r, 4, "CHANGED", "ssh-keygen -R")


def test_known_hosts_flag(cli, redis_plain, sshd, tmp_path):
    env = env_for(redis_plain, sshd, BASTION_KNOWN_HOSTS=str(tmp_path / "empty"))
    r = cli("tunnel", "--known-hosts", str(sshd.known_hosts), "--", "true", env=env)
    assert r.code == 0, r.err


def test_no_orphan_ssh_after_runs(redis_plain, sshd):
    # `--` ends pgrep's options: the pattern starts with "-p" (pgrep exits 1 when none match)
    out = subprocess.run(
        ["pgrep", "-a", "-f", "--", f"-p {sshd.port} -l"], capture_output=True, text=True
    )
    assert out.returncode == 1, f"ssh children left running: {out.stdout} {out.stderr}"


def test_ssh_errors_mapper_covers_paramiko():
    import paramiko

    from closeup_ops.errors import classify

    assert classify(paramiko.AuthenticationException("no")).exit_code == 4
    assert classify(paramiko.ChannelException(1, "Administratively prohibited")).exit_code == 4
    assert classify(paramiko.ChannelException(2, "Connect failed")).exit_code == 3
    assert classify(paramiko.SSHException("Error reading SSH protocol banner")).exit_code == 3
    assert os.environ.get("BASTION_HOST") is None


# --- every Redis command takes --via-bastion ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("ping", "--json"),
        ("keys", "t5:via:*", "--json"),
        ("ttl", "--pattern", "t5:via:*", "--json"),
        ("stats", "--json"),
        ("doctor", "--json"),
    ],
    ids=lambda a: a[0],
)
def test_redis_commands_take_via_bastion(cli, redis_plain, sshd, args):
    redis.Redis(port=redis_plain.port).set("t5:via:key", "v", ex=60)
    before = sshd.forwards_to(redis_plain.port)
    r = cli(args[0], "--via-bastion", *args[1:], env=env_for(redis_plain, sshd))
    assert r.code in (0, 6), (r.code, r.err)  # 6: a check ran and found something
    assert sshd.forwards_to(redis_plain.port) > before, "did not go through the bastion"
    assert "bastion" not in r.err and "cannot" not in r.err, r.err
    assert r.out.lstrip().startswith(("{", "["))


# --- where the tunnel listens ------------------------------------------------------------


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.0.2.7", "my-laptop.local"])
def test_non_loopback_bind_is_refused_without_allow_remote_bind(cli, redis_plain, sshd, bind):
    r = cli("tunnel", "--bind", bind, "--", "true", env=env_for(redis_plain, sshd))
    one_line(r, 2, f"--bind {bind}", "--allow-remote-bind")


def test_loopback_bind_is_allowed(cli, redis_plain, sshd, tmp_path):
    r = cli(
        "tunnel",
        "--bind",
        "127.0.0.2",
        "--",
        sys.executable,
        "-c",
        PRINT_ENV,
        str(tmp_path / "env"),
        env=env_for(redis_plain, sshd),
    )
    assert r.code == 7, r.err
    out = (tmp_path / "env").read_text()
    assert "REDIS_HOST=127.0.0.2" in out and "REDIS_URL=redis://127.0.0.2:" in out
