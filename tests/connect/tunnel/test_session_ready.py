"""The tunnel's local port answers only once it does what the tunnel will say it does: while
it still asks the cache whether it runs in cluster mode, nothing listens there (a client
that got in early would keep a plain forward: no AUTH by the tunnel, no address rewriting)."""

from __future__ import annotations

import socket

import redis
from helpers.bastion import bastion_env

from closeup_ops.connect.tunnel import session
from closeup_ops.settings import load


def _open(monkeypatch, server, sshd):
    seen = []
    real = session.Tunnel._ask_cache

    def asking(self, ask_cluster):
        with socket.socket() as probe:
            probe.settimeout(5)
            seen.append(probe.connect_ex(("127.0.0.1", self.local_port)))
        return real(self, ask_cluster)

    monkeypatch.setattr(session.Tunnel, "_ask_cache", asking)
    env = {**bastion_env(sshd), "REDIS_HOST": server.host, "REDIS_PORT": str(server.port)}
    tun = session.open_tunnel(load({}, environ=env), announce=lambda text: None)
    return tun, seen


def test_nothing_listens_while_the_cluster_mode_is_asked(monkeypatch, redis_cluster, sshd):
    tun, seen = _open(monkeypatch, redis_cluster.entry, sshd)
    try:
        assert seen and all(code != 0 for code in seen), seen  # refused: no early -L
        assert tun.cluster and tun.proxied
        client = redis.Redis(port=tun.local_port, socket_timeout=10)
        assert client.ping() and client.cluster("info")["cluster_state"] == "ok"
    finally:
        tun.close()


def test_a_plain_standalone_cache_gets_its_forward_after_asking(monkeypatch, redis_plain, sshd):
    tun, seen = _open(monkeypatch, redis_plain, sshd)
    try:
        assert seen and all(code != 0 for code in seen), seen
        assert not tun.cluster and not tun.proxied and tun.forwards
        assert redis.Redis(port=tun.local_port, socket_timeout=10).ping()
    finally:
        tun.close()
