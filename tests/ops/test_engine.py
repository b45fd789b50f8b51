"""ops/engine.py: the engine and its own version from INFO server, on INFO as documented
(Valkey's INFO reference) and on real servers of both engines."""

from __future__ import annotations

import pytest
import redis
from helpers.engines import expected_engine

from closeup_ops.local.servers import start_redis
from closeup_ops.ops.engine import engine_of


@pytest.mark.parametrize("info, expected", [
    # Valkey's documented INFO server: redis_version stays at the compatible Redis OSS 7.2.4
    ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.2"},
     "valkey 8.0.2"),
    # a Valkey that names itself but not its own version field: the compatible version
    ({"redis_version": "7.2.5", "server_name": "valkey"}, "valkey 7.2.5"),
    ({"redis_version": "7.0.15", "redis_mode": "standalone"}, "redis 7.0.15"),
    ({"redis_version": "7.2.4", "valkey_version": "9.0.0"}, "valkey 9.0.0"),
    ({}, "redis ?"),  # a server that hides INFO server
])  # fmt: skip
def test_engine_of_documented_info(info, expected):
    assert str(engine_of(info)) == expected


@pytest.mark.parametrize("engine", ["redis", "valkey"])
def test_engine_of_a_real_server(tmp_path, engine):
    server = start_redis(tmp_path / engine, engine=engine)
    client = redis.Redis(host=server.host, port=server.port)
    try:
        assert str(engine_of(client.info("server"))) == expected_engine(server)
        assert str(engine_of(client.info())) == expected_engine(server)
    finally:
        client.close()
        server.stop()
