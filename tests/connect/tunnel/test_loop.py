"""The proxy's event loop: uvloop where installed (the measured fast path), the standard
library's when CLOSEUP_OPS_PROXY_LOOP=asyncio; the same protocol code works on both."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
import redis

from closeup_ops.connect.tunnel.proxy import LOOP_ENV, NodeProxy, Upstream, new_loop


def test_uvloop_by_default_when_installed(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.delenv(LOOP_ENV, raising=False)
    loop = new_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    loop = new_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


@pytest.mark.parametrize("which", ["uvloop", "asyncio"])
def test_round_trips_on_either_loop(monkeypatch, redis_plain, which):
    if which == "uvloop":
        pytest.importorskip("uvloop")
        monkeypatch.delenv(LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(LOOP_ENV, which)

    def dial(host: str, port: int) -> socket.socket:
        return socket.create_connection((host, port), timeout=5)

    proxy = NodeProxy(dial, Upstream(), cluster=False)
    proxy.start()
    try:
        local = proxy.add(redis_plain.host, redis_plain.port)
        client = redis.Redis(host="127.0.0.1", port=local, socket_timeout=10)
        big = os.urandom(3 << 20)
        client.set("t11:loop:big", big, ex=60)
        got = client.get("t11:loop:big")
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
        pipe = client.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"t11:loop:{i}", i, ex=60)
            pipe.get(f"t11:loop:{i}")
        replies = pipe.execute()
        assert replies[1::2] == [str(i).encode() for i in range(200)]
        client.close()
    finally:
        proxy.close()
