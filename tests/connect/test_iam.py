"""The IAM auth token: SigV4-presigned `connect`, with fixed credentials and a frozen clock."""

from __future__ import annotations

import datetime
import os
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers.iam_front import IamFront, IamRules, check_token, start_iam_backend

from closeup_ops.connect.iam import iam_token
from closeup_ops.settings import Settings


@pytest.fixture
def frozen(monkeypatch):
    import botocore.auth

    at = datetime.datetime(2026, 1, 13, 10, 30, 0, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: at)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    return at


def _parts(token: str):
    url = urlsplit("https://" + token)
    return url.netloc, url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _check(token: str, user: str, resource: str, region: str, serverless: bool, at):
    rules = IamRules(user, resource, region, serverless, "AKIDEXAMPLE", SECRET, lambda: at)
    return check_token(token, user, rules)[0]


def test_serverless_token_form(frozen):
    s = Settings(
        host="demo-du95w6.serverless.aps1.cache.amazonaws.com", username="app-user", iam_auth=True
    )
    token = iam_token(s)
    host, path, q = _parts(token)
    assert not token.startswith("https://")
    assert host == "demo" and path == "/"
    assert q["Action"] == "connect" and q["User"] == "app-user"
    assert q["ResourceType"] == "ServerlessCache"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Credential"] == "AKIDEXAMPLE/20260113/ap-south-1/elasticache/aws4_request"
    assert q["X-Amz-Date"] == "20260113T103000Z"
    assert q["X-Amz-Expires"] == "900"
    assert q["X-Amz-SignedHeaders"] == "host"
    # the signature, recomputed from the secret key by the SigV4 algorithm (tests/helpers)
    assert _check(token, "app-user", "demo", "ap-south-1", True, frozen) is None
    assert _check(token, "app-user", "demo", "ap-south-1", False, frozen) is not None
    # deterministic for fixed credentials and clock
    assert iam_token(s) == token


def test_replication_group_token_uses_cache_name_and_region_flag(frozen):
    s = Settings(
        host="master.orders.abc123.use1.cache.amazonaws.com",
        username="u1",
        iam_auth=True,
        cache="Orders-RG",  # AWS stores ids lower-case
        region="eu-west-1",
    )
    token = iam_token(s)
    host, _, q = _parts(token)
    assert host == "orders-rg"
    assert "ResourceType" not in q
    assert "/eu-west-1/elasticache/" in q["X-Amz-Credential"]
    assert _check(token, "u1", "orders-rg", "eu-west-1", False, frozen) is None


@pytest.mark.parametrize(
    "host,resource",
    [
        # a node of a cluster-mode-enabled group: the group is the SECOND label
        ("demo-0001-001.demo.abc123.euw1.cache.amazonaws.com", "demo"),
        ("Demo-0002-002.Demo.abc123.euw1.cache.amazonaws.com", "demo"),
        ("clustercfg.demo.abc123.euw1.cache.amazonaws.com", "demo"),
        ("replica.demo.abc123.euw1.cache.amazonaws.com", "demo"),
    ],
)
def test_resource_is_the_replication_group_of_any_endpoint(frozen, monkeypatch, host, resource):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the endpoint says eu-west-1
    token = iam_token(Settings(host=host, username="u1", iam_auth=True))
    host_part, _, q = _parts(token)
    assert host_part == resource
    assert q["X-Amz-Credential"].split("/")[2] == "eu-west-1"
    assert _check(token, "u1", resource, "eu-west-1", False, frozen) is None


def test_through_a_tunnel_the_real_name_decides(frozen, monkeypatch):
    """REDIS_HOST is 127.0.0.1 behind a tunnel; REDIS_TLS_SERVER_NAME is the endpoint."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    s = Settings(
        host="127.0.0.1",
        port=16379,
        tls=True,
        tls_server_name="demo-du95w6.serverless.aps1.cache.amazonaws.com",
        username="app-user",
        iam_auth=True,
    )
    token = iam_token(s)
    host, _, q = _parts(token)
    assert host == "demo" and q["ResourceType"] == "ServerlessCache"
    assert _check(token, "app-user", "demo", "ap-south-1", True, frozen) is None


def test_a_fresh_token_for_every_connection(frozen, monkeypatch):
    import botocore.auth

    from closeup_ops.connect.iam import iam_provider

    clock = [frozen]
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: clock[0])
    provider = iam_provider(
        Settings(host="master.orders.abc123.use1.cache.amazonaws.com", username="u", iam_auth=True)
    )
    user, first = provider.get_credentials()
    clock[0] = frozen + datetime.timedelta(minutes=16)
    _, second = provider.get_credentials()
    assert user == "u" and first != second
    later = clock[0]
    assert _check(first, "u", "orders", "us-east-1", False, later) == "the token has expired"
    assert _check(second, "u", "orders", "us-east-1", False, later) is None


def test_no_credentials_is_exit_4(monkeypatch, tmp_path):
    from closeup_ops.errors import AuthError

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s = Settings(
        host="demo-du95w6.serverless.aps1.cache.amazonaws.com", username="u", iam_auth=True
    )
    with pytest.raises(AuthError):
        iam_token(s)


def test_factory_authenticates_with_the_token_over_tls(frozen, redis_tls, tls_files):
    """A real TLS server whose ACL user has the token as password: the factory signs the
    same token and logs in as the user id."""
    from closeup_ops.connect.redis import connect
    from closeup_ops.local.servers import redis_cli

    s = Settings(
        host="127.0.0.1",
        port=redis_tls.port,
        username="iam-user-1",
        iam_auth=True,
        tls=True,
        ca_cert=str(tls_files.ca),
        cache="orders-rg",
        region="us-east-1",
    )
    token = iam_token(s)
    redis_cli(
        redis_tls,
        "ACL",
        "SETUSER",
        "iam-user-1",
        "on",
        f">{token}",
        "+ping",
        "+info",
        "+client",
        "+hello",
        "+acl|whoami",
        tls=tls_files,
    )
    target = connect(s)
    try:
        assert target.client.ping() is True
        assert target.client.execute_command("ACL WHOAMI") in ("iam-user-1", b"iam-user-1")
    finally:
        target.close()


# --- end to end: the CLI against a TLS front that checks the token like ElastiCache --------

NODE = "demo-0001-001.demo.abc123.euw1.cache.amazonaws.com"
SERVERLESS = "shop-x1y2z3.serverless.euw1.cache.amazonaws.com"
IAM_USER = "iam-app"
IAM_BACKEND_PASSWORD = "backend-only-Pa55"


@pytest.fixture(scope="module")
def iam_backend(tmp_path_factory):
    """A TLS redis-server whose ACL user is the ElastiCache user id."""
    server, backend_tls, front_tls = start_iam_backend(
        tmp_path_factory.mktemp("iam"),
        IAM_USER,
        IAM_BACKEND_PASSWORD,
        (NODE, SERVERLESS, "localhost"),
        ("127.0.0.1",),
    )
    yield server, backend_tls, front_tls
    server.stop()


@pytest.fixture
def iam_front(iam_backend, monkeypatch):
    server, backend_tls, front_tls = iam_backend
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the endpoints say eu-west-1
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    fronts = []

    def make(resource: str, serverless: bool, now=None) -> IamFront:
        rules = IamRules(IAM_USER, resource, "eu-west-1", serverless, "AKIDEXAMPLE", SECRET)
        if now is not None:
            rules.now = now
        front = IamFront(
            ("127.0.0.1", server.port),
            str(backend_tls.ca),
            str(front_tls.cert),
            str(front_tls.key),
            rules,
            IAM_BACKEND_PASSWORD,
        ).start()
        fronts.append(front)
        return front

    yield make, front_tls
    for front in fronts:
        front.stop()


def _env(front, front_tls, server_name: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(front.port),
        "REDIS_TLS": "true",
        "REDIS_TLS_SERVER_NAME": server_name,
        "REDIS_CA_CERT": str(front_tls.ca),
        "REDIS_IAM_AUTH": "true",
        "REDIS_USERNAME": IAM_USER,
        **extra,
    }


def test_cli_ping_with_iam_through_a_tunnel_to_a_node_endpoint(cli, iam_front):
    make, front_tls = iam_front
    front = make("demo", serverless=False)
    res = cli("ping", "--json", env=_env(front, front_tls, NODE))
    assert res.code == 0, (res.err, front.rejected)
    assert res.json()["reply"] == "PONG" and res.json()["tls"] is True
    assert front.rejected == [] and front.accepted
    token = front.accepted[0]
    assert token["X-Amz-Credential"].split("/")[2] == "eu-west-1" and "ResourceType" not in token


def test_cli_ping_with_iam_to_a_serverless_cache_behind_a_tunnel(cli, iam_front):
    make, front_tls = iam_front
    front = make("shop", serverless=True)
    res = cli("ping", "--json", env=_env(front, front_tls, SERVERLESS, REDIS_CLUSTER="false"))
    assert res.code == 0, (res.err, front.rejected)
    assert front.rejected == [] and front.accepted[0]["ResourceType"] == "ServerlessCache"


def test_cli_ping_with_a_token_the_front_refuses(cli, iam_front):
    make, front_tls = iam_front
    front = make("demo", serverless=False)
    env = _env(front, front_tls, NODE, AWS_SECRET_ACCESS_KEY="not-the-key")
    res = cli("ping", env=env)
    assert res.code == 4, res.err
    assert front.rejected == ["signature does not match"]
    assert len(res.err_lines) == 1 and "Traceback" not in res.err
    assert "X-Amz-Signature" not in res.err and "not-the-key" not in res.err


def test_a_client_reconnecting_after_15_minutes_signs_a_new_token(iam_front, monkeypatch):
    """The token is checked when a connection authenticates: a reconnect 16 minutes later
    (tunnel, stats --watch, failover-test) must present a new one."""
    import botocore.auth

    from closeup_ops.connect.redis import connect

    start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    clock = [start]
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: clock[0])
    make, front_tls = iam_front
    front = make("demo", serverless=False, now=lambda: clock[0])
    s = Settings(
        host="127.0.0.1",
        port=front.port,
        tls=True,
        tls_server_name=NODE,
        ca_cert=str(front_tls.ca),
        iam_auth=True,
        username=IAM_USER,
        cluster=False,
    )
    target = connect(s)
    try:
        assert target.client.ping() is True
        clock[0] = start + datetime.timedelta(minutes=16)
        target.client.connection_pool.disconnect()  # the link drops; the client reconnects
        assert target.client.ping() is True
    finally:
        target.close()
    assert front.rejected == []
    dates = [t["X-Amz-Date"] for t in front.accepted]
    assert len(dates) == 2 and dates[0] != dates[1]
