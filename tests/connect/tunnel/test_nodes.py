"""Tunnel logic without a CLI: forwards and bind addresses, host-key checks, local settings
and the child's environment for TLS/serverless, and OpenSSH's messages."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest
from helpers.sshd import keygen

from closeup_ops.connect.tunnel.bastion import Bastion, verify_host_key
from closeup_ops.connect.tunnel.nodes import Forward, client_host, is_loopback
from closeup_ops.connect.tunnel.proxy import NodeProxy, Upstream
from closeup_ops.connect.tunnel.session import (
    Tunnel,
    child_env,
    choose_local_port,
    exports,
    upstream_for,
)
from closeup_ops.errors import AuthError, ConnectError, UsageError
from closeup_ops.errors.ssh import map_ssh_stderr
from closeup_ops.settings import Settings

SERVERLESS = "demo-du95w6.serverless.aps1.cache.amazonaws.com"


@pytest.mark.parametrize(
    ("bind", "loopback", "dial"),
    [
        ("127.0.0.1", True, "127.0.0.1"),
        ("127.0.0.2", True, "127.0.0.2"),
        ("::1", True, "::1"),
        ("localhost", True, "127.0.0.1"),
        ("0.0.0.0", False, "127.0.0.1"),
        ("10.0.0.5", False, "10.0.0.5"),
        ("my-laptop.local", False, "my-laptop.local"),
    ],
)
def test_bind_addresses(bind, loopback, dial):
    assert is_loopback(bind) is loopback
    assert client_host(bind) == dial


def test_ssh_spec_brackets_ipv6():
    assert Forward("fd00::5", 6379, 4000).ssh_spec() == "127.0.0.1:4000:[fd00::5]:6379"
    assert Forward("cache.x", 6379, 4000).ssh_spec() == "127.0.0.1:4000:cache.x:6379"
    assert Forward("cache.x", 1, 2, bind="::1").ssh_spec() == "[::1]:2:cache.x:1"


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


def tunnel_for(settings: Settings, cluster: bool = False, proxied: bool = True) -> Tunnel:
    t = Tunnel(settings, bastion(Path("/nonexistent")), 40000, announce=lambda text: None)
    t.cluster = cluster
    if proxied:  # a real proxy object, never started: no listener, no thread
        t.proxy = NodeProxy(lambda h, p: None, upstream_for(settings), cluster=cluster)
    else:
        t.forwards = [Forward(settings.host, settings.port, 40000)]
    return t


def test_serverless_local_side_is_plain_tcp_without_credentials():
    from closeup_ops.settings import Secret

    s = Settings(host=SERVERLESS, port=6379, username="app", password=Secret("pw-8f1"))
    t = tunnel_for(s.with_(via_bastion=True), cluster=True)
    local = t.local_settings
    assert (local.host, local.port) == ("127.0.0.1", 40000)
    assert local.use_tls is False and local.password is None and local.username is None
    assert local.cluster is True and local.via_bastion is False and local.iam_auth is False
    base = {
        "BASTION_HOST": "b",
        "REDIS_PASSWORD": "pw-8f1",
        "REDIS_USERNAME": "app",
        "REDIS_TLS_SERVER_NAME": SERVERLESS,
        "CLOSEUP_OPS_ADDRESS_MAP": "x:1=127.0.0.1:2",
        "HOME": "/home/dev",
    }
    env = child_env(t, base=base)
    assert env["REDIS_TLS"] == "false" and env["REDIS_CLUSTER"] == "true"
    assert env["REDIS_HOST"] == "127.0.0.1" and env["REDIS_PORT"] == "40000"
    assert env["REDIS_URL"] == "redis://127.0.0.1:40000"
    for gone in ("BASTION_HOST", "REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_TLS_SERVER_NAME"):
        assert gone not in env
    assert "CLOSEUP_OPS_ADDRESS_MAP" not in env and env["HOME"] == "/home/dev"
    assert "pw-8f1" not in repr(exports(t)) + repr(env)


def test_upstream_takes_the_settings_credentials_and_tls():
    from closeup_ops.settings import Secret

    s = Settings(host=SERVERLESS, port=6379, username="app", password=Secret("pw-8f1"))
    up = upstream_for(s)
    assert isinstance(up, Upstream)
    assert up.tls is True and up.username == "app" and up.password() == "pw-8f1"
    # a node named by hostname is verified against that name (test_proxy_tls.py); this one
    # is for nodes known only by IP: the endpoint, when REDIS_TLS_SERVER_NAME is not set
    assert up.server_name == SERVERLESS
    plain = upstream_for(Settings(host="10.0.0.5", tls=True, tls_server_name="c.example"))
    assert plain.server_name == "c.example" and plain.password is None  # nothing to send


def test_iam_upstream_signs_a_token_per_connection(monkeypatch):
    from urllib.parse import parse_qs, urlsplit

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    s = Settings(host=SERVERLESS, port=6379, username="iam-app", iam_auth=True)
    up = upstream_for(s)
    assert up.username == "iam-app"
    tokens = [up.password(), up.password()]
    for token in tokens:  # AWS docs: the presigned connect URL without https://
        url = urlsplit("https://" + token)
        query = parse_qs(url.query)
        assert url.hostname == "demo" and query["Action"] == ["connect"]
        assert query["User"] == ["iam-app"] and query["ResourceType"] == ["ServerlessCache"]
        assert "/ap-south-1/elasticache/" in query["X-Amz-Credential"][0]
    env = child_env(tunnel_for(s, cluster=True), base={"REDIS_IAM_AUTH": "true"})
    assert env["REDIS_IAM_AUTH"] == "false"  # the tunnel signs; a child must not try


def test_plain_forward_keeps_the_apps_own_settings():
    s = Settings(host="10.0.0.5", port=6380)
    t = tunnel_for(s, proxied=False)
    assert t.local_settings.use_tls is False and t.local == "127.0.0.1:40000"
    env = child_env(t, base={"REDIS_PASSWORD": "app-own"})
    assert env["REDIS_PASSWORD"] == "app-own"  # passed through the forward as before
    assert "REDIS_CLUSTER" not in env


def test_proxy_without_credentials_leaves_the_apps_own_auth_to_it():
    # cluster mode unknown (the cache wants AUTH the tunnel lacks): proxied, and the app's
    # own AUTH passes through, so its credentials stay; TLS is still the tunnel's business
    s = Settings(host="10.0.0.5", port=6380, tls=True, username="app")
    base = {"REDIS_PASSWORD": "app-own", "REDIS_USERNAME": "app", "REDIS_CA_CERT": "/ca.pem"}
    env = child_env(tunnel_for(s), base=base)
    assert env["REDIS_PASSWORD"] == "app-own" and env["REDIS_USERNAME"] == "app"
    assert "REDIS_CA_CERT" not in env and env["REDIS_TLS"] == "false"


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


def test_reader_in_finds_the_endpoint_name_on_another_port():
    from closeup_ops.connect.tunnel.nodes import reader_in

    name = "demo-x1.serverless.use1.cache.amazonaws.com"
    # RESP2 list as a serverless cache answers: every slot on the endpoint, reader on 6380
    listed = [[0, 16383, [name.encode(), 6379, b"id1"], [name.encode(), 6380, b"id2"]]]
    assert reader_in(listed, name, 6379) == 6380
    assert reader_in(listed, name.upper() + ".", 6379) == 6380  # DNS names: any case, dot
    # hostname only in the metadata (the first element an IP)
    meta = [[0, 16383, [b"10.0.0.5", 6379, b"id1", [b"hostname", name.encode()]],
             [b"10.0.0.6", 6380, b"id2", {b"hostname": name.encode()}]]]  # fmt: skip
    assert reader_in(meta, name, 6379) == 6380
    # redis-py's dict form
    parsed = {(0, 16383): {"primary": (name, 6379), "replicas": [(name, 6380)]}}
    assert reader_in(parsed, name, 6379) == 6380
    # nodes of other names, or the endpoint's own port only: no reader
    other = [[0, 16383, [b"node-1.example", 6379, b"a"], [b"node-2.example", 6380, b"b"]]]
    assert reader_in(other, name, 6379) is None
    assert reader_in([[0, 16383, [name.encode(), 6379, b"a"]]], name, 6379) is None
