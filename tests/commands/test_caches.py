"""`closeup-ops caches` and finding the cache, driven as a user would (moto + Stubber)."""

from __future__ import annotations

from helpers import aws as aws_helpers
from helpers.aws import serverless_desc, stubbed

aws_env = aws_helpers.aws_env
moto_world = aws_helpers.moto_world


def test_caches_lists_every_kind_json(cli, moto_world):
    r = cli("caches", "--json")
    assert r.code == 0, r.err
    doc = {c["name"]: c for c in r.json()}
    assert set(doc) == {"demo", "single"}
    demo = doc["demo"]
    assert demo["kind"] == "replication-group" and demo["tls"] is True
    assert demo["ports"] == [6379] and demo["cluster_mode"] is False
    assert any(e["role"] == "primary" for e in demo["endpoints"])
    assert doc["single"]["kind"] == "cache-cluster" and doc["single"]["engine"] == "redis"


def test_caches_table(cli, moto_world):
    r = cli("caches")
    assert r.code == 0, r.err
    header = r.out.splitlines()[0].split()
    assert header[:4] == ["name", "kind", "engine", "status"] and "security" in header
    assert "replication-group" in r.out and "master.demo." in r.out


def _patch_clients(monkeypatch, **clients):
    from closeup_ops.connect import aws

    monkeypatch.setattr(aws, "aws_client", lambda settings, service, session=None: clients[service])


def test_caches_with_serverless_stubbed(cli, aws_env, monkeypatch):
    ec, stub = stubbed("elasticache", "ap-south-1")
    stub.add_response("describe_serverless_caches", {"ServerlessCaches": [serverless_desc()]}, {})
    stub.add_response("describe_cache_clusters", {"CacheClusters": []}, {"ShowCacheNodeInfo": True})
    stub.add_response("describe_replication_groups", {"ReplicationGroups": []}, {})
    _patch_clients(monkeypatch, elasticache=ec)
    with stub:
        r = cli("caches", "--json")
    assert r.code == 0, r.err
    (cache,) = r.json()
    assert cache["kind"] == "serverless" and cache["ports"] == [6379, 6380]
    assert cache["tls"] is True and cache["security_groups"] == ["sg-0cache"]


def test_access_denied_exits_4_in_one_line(cli, aws_env, monkeypatch):
    ec, stub = stubbed("elasticache")
    stub.add_client_error(
        "describe_serverless_caches",
        service_error_code="AccessDenied",
        service_message="User: arn:aws:iam::1:user/x is not authorized",
        http_status_code=403,
    )
    _patch_clients(monkeypatch, elasticache=ec)
    with stub:
        r = cli("caches")
    assert r.code == 4
    assert len(r.err_lines) == 1 and "AccessDenied" in r.err and "IAM" in r.err
    assert "Traceback" not in r.err


def test_no_credentials_exits_4_with_what_to_set(cli, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = cli("caches")
    assert r.code == 4
    assert len(r.err_lines) == 1 and "AWS_PROFILE" in r.err


def test_cache_not_found_exits_5_and_lists_caches(cli, moto_world):
    r = cli("snapshot", "create", "--cache", "nope")
    assert r.code == 5
    assert "'nope' not found" in r.err and "demo (replication-group)" in r.err
    r = cli("snapshot", "create", env={"REDIS_HOST": "x.abc.use1.cache.amazonaws.com"})
    assert r.code == 5 and "REDIS_HOST" in r.err and "single (cache-cluster)" in r.err


def test_cache_from_environment_variable(cli, moto_world):
    r = cli("snapshot", "list", "--json", env={"ELASTICACHE_CACHE": "nope"})
    assert r.code == 5 and "'nope' not found" in r.err
