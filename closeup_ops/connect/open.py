"""Open a Redis connection for one command's run: directly, or through an SSH tunnel when
--via-bastion asks for it. Above both connect/redis.py and connect/tunnel/, so neither
imports the other's caller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from closeup_ops.connect.redis import RedisTarget, connect
from closeup_ops.settings import Settings


@contextmanager
def open_redis(settings: Settings) -> Iterator[RedisTarget]:
    """Connect for one command's run, through an SSH tunnel when --via-bastion asks for it."""
    if settings.via_bastion:
        from closeup_ops.connect.tunnel.session import tunnelled

        with tunnelled(settings) as (local_settings, _):
            # The tunnel's proxy rewrites node addresses and speaks TLS to the cache.
            target = connect(local_settings)
            target.tls = settings.use_tls  # what the cache connection is, for reports
            try:
                yield target
            finally:
                target.close()
        return
    target = connect(settings)
    try:
        yield target
    finally:
        target.close()
