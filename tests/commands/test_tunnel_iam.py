"""REDIS_IAM_AUTH=true through `closeup-ops tunnel`: the tunnel signs a fresh IAM token for
every upstream connection, so the local client (redis-cli, with no AWS code and no AUTH)
just connects. The cache side is tests/helpers/iam_front.py: a TLS front that checks each
token as ElastiCache documents it (SigV4 recomputed from the test's own secret key) before
relaying to a real redis-server; the bastion is the real sshd on loopback."""

from __future__ import annotations

import os

import pytest
from helpers.bastion import bastion_env
from helpers.iam_front import IamFront, IamRules, start_iam_backend

IAM_USER = "iam-app"
BACKEND_PASSWORD = "backend-Pa55-31"
ACCESS_KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SERVERLESS = "shop-x1y2z3.serverless.euw1.cache.amazonaws.com"
NODE = "master.demo.abc123.euw1.cache.amazonaws.com"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server, tls, front_tls = start_iam_backend(
        tmp_path_factory.mktemp("tunnel-iam"), IAM_USER, BACKEND_PASSWORD, (SERVERLESS, NODE), ()
    )
    yield server, tls, front_tls
    server.stop()


@pytest.fixture
def front(backend, monkeypatch):
    server, tls, front_tls = backend
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    made = []

    def make(resource: str, serverless: bool) -> IamFront:
        rules = IamRules(IAM_USER, resource, "eu-west-1", serverless, ACCESS_KEY, SECRET)
        f = IamFront(
            ("127.0.0.1", server.port),
            str(tls.ca),
            str(front_tls.cert),
            str(front_tls.key),
            rules,
            BACKEND_PASSWORD,
        ).start()
        made.append(f)
        return f

    yield make, front_tls
    for f in made:
        f.stop()


# The child: plain redis-cli, no AUTH, TLS off: three separate connections.
CHILD = (
    '{ redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" SET t11:iam v1 && '
    'redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" GET t11:iam && '
    'redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL t11:iam; } > "$1" && '
    'test -z "$REDIS_USERNAME" && test "$REDIS_IAM_AUTH" = false'
)


@pytest.mark.parametrize(
    ("name", "resource", "serverless"),
    [(SERVERLESS, "shop", True), (NODE, "demo", False)],
    ids=["serverless", "node"],
)
def test_tunnel_signs_a_token_for_every_upstream_connection(
    cli, sshd, front, tmp_path, name, resource, serverless
):
    make, front_tls = front
    f = make(resource, serverless)
    env = bastion_env(
        sshd,
        REDIS_HOST="127.0.0.1",  # what the bastion dials; the certificate names `name`
        REDIS_PORT=str(f.port),
        REDIS_TLS="true",
        REDIS_TLS_SERVER_NAME=name,
        REDIS_CA_CERT=str(front_tls.ca),
        REDIS_CLUSTER="false",  # the front relays to one standalone server
        REDIS_IAM_AUTH="true",
        REDIS_USERNAME=IAM_USER,
    )
    before = sshd.forwards_to(f.port)
    r = cli("tunnel", "--", "sh", "-c", CHILD, "child", str(tmp_path / "out"), env=env)
    out = (tmp_path / "out").read_text()
    assert r.code == 0, (r.err, f.rejected)
    assert out.split() == ["OK", "v1", "1"], out
    assert f.rejected == []
    # the tunnel's own check + the child's three connections, each with a valid token
    assert len(f.accepted) == 4, f.accepted
    assert all(p["User"] == IAM_USER for p in f.accepted)
    assert all(("ResourceType" in p) is serverless for p in f.accepted)
    assert sshd.forwards_to(f.port) >= before + 4  # every one went through the bastion


def test_tunnel_with_a_token_the_cache_refuses_fails_before_the_child(cli, sshd, front, tmp_path):
    make, front_tls = front
    f = make("shop", True)
    env = bastion_env(
        sshd,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(f.port),
        REDIS_TLS="true",
        REDIS_TLS_SERVER_NAME=SERVERLESS,
        REDIS_CA_CERT=str(front_tls.ca),
        REDIS_CLUSTER="false",
        REDIS_IAM_AUTH="true",
        REDIS_USERNAME=IAM_USER,
        AWS_SECRET_ACCESS_KEY="not-the-key",
    )
    marker = tmp_path / "ran"
    r = cli("tunnel", "--", "touch", str(marker), env=env)
    assert r.code == 4, r.err
    errors = [line for line in r.err_lines if "error" in line]
    assert len(errors) == 1 and "Traceback" not in r.err, r.err
    assert f.rejected == ["signature does not match"] and not marker.exists()
