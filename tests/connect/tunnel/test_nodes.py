"""Tunnel logic without a CLI: node discovery replies, the address map, host-key checks,
local settings for TLS/serverless, and OpenSSH's messages."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest
from helpers.sshd import keygen

from closeup_ops.connect.tunnel.bastion import Bastion, verify_host_key
from closeup_ops.connect.tunnel.nodes import (
    Forward,
    decode_map,
    encode_map,
    nodes_from_slots,
    remap_from_env,
    remapper,
)
from closeup_ops.connect.tunnel.session import Tunnel, child_env, choose_local_port
from closeup_ops.errors import AuthError, ConnectError, UsageError
from closeup_ops.errors.ssh import map_ssh_stderr
from closeup_ops.settings import Settings

SERVERLESS = "demo-du95w6.serverless.aps1.cache.amazonaws.com"


def test_nodes_from_slots_primaries_replicas_and_blank_host():
    reply = [
        [0, 5460, [b"10.0.0.1", 6379, b"id1", {}], [b"10.0.0.4", 6379, b"id4", {}]],
        [5461, 10922, [b"", 6380, b"id2", {}]],
        [10923, 16383, ["10.0.0.3", 6379, "id3"], [b"10.0.0.1", 6379, b"id1", {}]],
    ]
    nodes = nodes_from_slots(reply, ("clustercfg.example", 6379))
    assert nodes == [
        ("10.0.0.1", 6379),
        ("10.0.0.4", 6379),
        ("clustercfg.example", 6380),
        ("10.0.0.3", 6379),
    ]


def test_remap_and_env_round_trip():
    forwards = [Forward("10.0.0.1", 6379, 40001), Forward("10.0.0.2", 6379, 40002)]
    remap = remapper(forwards)
    assert remap(("10.0.0.2", 6379)) == ("127.0.0.1", 40002)
    assert remap((b"10.0.0.1", 6379)) == ("127.0.0.1", 40001)
    assert remap(("10.9.9.9", 1)) == ("10.9.9.9", 1)
    text = encode_map(forwards)
    assert decode_map(text) == forwards
    env_remap = remap_from_env({"CLOSEUP_OPS_ADDRESS_MAP": text})
    assert env_remap(("10.0.0.1", 6379)) == ("127.0.0.1", 40001)
    assert remap_from_env({}) is None


def test_ssh_spec_brackets_ipv6():
    assert Forward("fd00::5", 6379, 4000).ssh_spec() == "127.0.0.1:4000:[fd00::5]:6379"
    assert Forward("cache.x", 6379, 4000).ssh_spec() == "127.0.0.1:4000:cache.x:6379"


def bastion(tmp_path: Path, accept_new: bool = False) -> Bastion:
    return Bastion(
        "bastion.example",
        2222,
        "ec2-user",
        None,
        tmp_path / "ssh" / "known_hosts",
        accept_new=accept_new,
    )


def host_key(tmp_path: Path, name: str):
    return paramiko.PKey.from_path(keygen(tmp_path / name))


def test_unknown_host_key_is_refused_with_fingerprint(tmp_path):
    key = host_key(tmp_path, "hk")
    with pytest.raises(AuthError) as info:
        verify_host_key(bastion(tmp_path), key, {})
    assert key.fingerprint in info.value.line()
    assert "--accept-new-host-key" in info.value.line()
    assert not (tmp_path / "ssh" / "known_hosts").exists()


def test_accept_new_records_key_readable_by_paramiko(tmp_path):
    key = host_key(tmp_path, "hk")
    b = bastion(tmp_path, accept_new=True)
    verify_host_key(b, key, {})
    assert oct(b.known_hosts.stat().st_mode & 0o777) == "0o600"
    known = paramiko.HostKeys(str(b.known_hosts)).lookup("[bastion.example]:2222")
    assert known[key.get_name()] == key
    verify_host_key(b, key, dict(known))  # now known: no error


def test_changed_host_key_is_refused_even_with_accept_new(tmp_path):
    old, new = host_key(tmp_path, "old"), host_key(tmp_path, "new")
    with pytest.raises(AuthError) as info:
        verify_host_key(bastion(tmp_path, accept_new=True), new, {old.get_name(): old})
    assert "CHANGED" in info.value.line() and "ssh-keygen -R" in info.value.line()


def tunnel_for(settings: Settings, cluster: bool = False) -> Tunnel:
    t = Tunnel(settings, bastion(Path("/nonexistent")), 40000, announce=lambda text: None)
    t.forwards = [Forward(settings.host, settings.port, 40000)]
    t.cluster = cluster
    return t


def test_local_settings_for_serverless_keep_tls_name_and_cluster():
    t = tunnel_for(Settings(host=SERVERLESS, port=6379, via_bastion=True), cluster=True)
    local = t.local_settings
    assert (local.host, local.port) == ("127.0.0.1", 40000)
    assert local.use_tls and local.server_name == SERVERLESS
    assert local.cluster is True and local.via_bastion is False
    env = child_env(t, base={"BASTION_HOST": "b"})
    assert env["REDIS_TLS_SERVER_NAME"] == SERVERLESS and env["REDIS_TLS"] == "true"
    assert env["REDIS_CLUSTER"] == "true" and "BASTION_HOST" not in env
    assert env["CLOSEUP_OPS_ADDRESS_MAP"] == f"{SERVERLESS}:6379=127.0.0.1:40000"


def test_local_settings_keep_an_explicit_tls_server_name():
    s = Settings(host="10.0.0.5", port=6379, tls=True, tls_server_name="cache.closeup.test")
    assert tunnel_for(s).local_settings.server_name == "cache.closeup.test"
    plain = tunnel_for(Settings(host="10.0.0.5", port=6380)).local_settings
    assert plain.use_tls is False and plain.tls_server_name is None


def test_choose_local_port_says_when_the_cache_port_is_taken():
    import socket

    said = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        port = choose_local_port(Settings(port=taken), None, said.append)
        assert port != taken and str(port) in said[0] and str(taken) in said[0]
        with pytest.raises(UsageError):
            choose_local_port(Settings(port=taken), taken, said.append)


@pytest.mark.parametrize(
    ("stderr", "kind", "needle"),
    [
        ("bind [127.0.0.1]:6379: Address already in use", ConnectError, "--local-port"),
        ("user@host: Permission denied (publickey).", AuthError, "authorized_keys"),
        ("ssh: connect to host b port 22: Connection refused", ConnectError, "BASTION_HOST"),
        ("Host key verification failed.", AuthError, "host key"),
        ("something new", ConnectError, "something new"),
    ],
)
def test_openssh_messages(stderr, kind, needle):
    err = map_ssh_stderr(stderr, "ec2-user@b:22", [6379])
    assert isinstance(err, kind)
    assert needle in err.line()
    assert os.linesep not in err.line()
