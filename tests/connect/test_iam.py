"""The IAM auth token: SigV4-presigned `connect`, with fixed credentials and a frozen clock."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest

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
    assert len(q["X-Amz-Signature"]) == 64
    # deterministic for fixed credentials and clock
    assert iam_token(s) == token


def test_replication_group_token_uses_cache_name_and_region_flag(frozen):
    s = Settings(
        host="master.orders.abc123.use1.cache.amazonaws.com",
        username="u1",
        iam_auth=True,
        cache="orders-rg",
        region="eu-west-1",
    )
    host, _, q = _parts(iam_token(s))
    assert host == "orders-rg"
    assert "ResourceType" not in q
    assert "/eu-west-1/elasticache/" in q["X-Amz-Credential"]


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
