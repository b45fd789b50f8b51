"""Shards worked at once: which node each shard is read from (`--replicas`), a bounded pool
of worker threads feeding one consumer (`--parallel N`), and the slot map compared before
and after the scan (a slot that moved meanwhile may have been missed or seen twice).

Threads, not processes: a worker spends its time in recv() waiting for its node (the GIL is
released there) and in hiredis (C). The consumer (the output, the summary's fold) runs in
the caller's thread, so what it keeps is one structure, never one per shard. Memory stays
bounded: at most QUEUE_PER_WORKER batches per worker wait in the queue, and a worker that
finds the queue full waits (its node then waits for it: back-pressure, not buffering).
"""

from __future__ import annotations

import ipaddress
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from closeup_ops.connect.redis import RedisTarget
from closeup_ops.ops.keyspace.rate import Cancelled, RateLimiter
from closeup_ops.ops.keyspace.scan import NodeChannel, pack
from closeup_ops.ops.keyspace.spec import DEFAULT_PARALLEL, ShardRead

QUEUE_PER_WORKER = 2


@dataclass
class Shard:
    """What a worker needs for one shard: the node to read from, the primary, a limiter."""

    read: ShardRead
    client: Any  # redis.Redis of the node read from
    primary_client: Any
    replicas: list[tuple[str, Any]]  # candidates, tried in order under --replicas
    limiter: RateLimiter | None = None
    readonly: bool = False  # cluster mode: READONLY on a replica's connections

    def channel(self) -> NodeChannel:
        """A raw channel to the node to read from: a replica (READONLY) when one answers,
        else the primary, with a note saying why."""
        errors = []
        for address, client in self.replicas:
            try:
                chan = NodeChannel(address, client, self.limiter, readonly=self.readonly)
            except Exception as exc:  # unreachable, READONLY refused: try the next one
                errors.append(f"{address}: {str(exc).splitlines()[0] if str(exc) else exc}")
                continue
            self.read.read_from, self.read.role, self.read.note = address, "replica", None
            self.replicas = [(address, client)]  # the shard's other channels use it too
            self.client = client
            return chan
        if errors:
            self.read.note = "no replica answered (" + "; ".join(errors) + "): read the primary"
            self.replicas = []
        return NodeChannel(self.read.primary, self.primary_client, self.limiter)

    def addresses(self) -> list[str]:
        """Every node this shard may be read from: its replica candidates and its primary."""
        return [a for a, _ in self.replicas] + [self.read.primary]

    def primary_channel(self) -> NodeChannel:
        return NodeChannel(self.read.primary, self.primary_client, self.limiter)


def plan(
    target: RedisTarget,
    *,
    replicas: bool = False,
    rate: int | None = None,
    stop: threading.Event | None = None,
) -> list[Shard]:
    """Every shard (every primary), in address order, with its replicas when asked for."""
    shards = []
    reps = _replicas_by_primary(target) if replicas else {}
    for address, client in target.primaries():
        read = ShardRead(address, address, "primary")
        found = reps.get(address, [])
        if replicas and not found:
            read.note = "the shard has no replica: read the primary"
        limiter = RateLimiter(rate, stop) if rate else None
        shards.append(Shard(read, client, client, found, limiter, target.cluster))
    return shards


def _replicas_by_primary(target: RedisTarget) -> dict[str, list[tuple[str, Any]]]:
    if target.cluster:
        out: dict[str, list[tuple[str, Any]]] = {}
        manager = target.client.nodes_manager
        for nodes in manager.slots_cache.values():
            if not nodes:
                continue
            primary = f"{nodes[0].host}:{nodes[0].port}"
            have = out.setdefault(primary, [])
            for node in nodes[1:]:
                entry = (f"{node.host}:{node.port}", node.redis_connection)
                if node.redis_connection is not None and entry[0] not in dict(have):
                    have.append(entry)
        return {k: sorted(v, key=lambda e: e[0]) for k, v in out.items()}
    return {target.endpoint: _standalone_replicas(target)}


def _standalone_replicas(target: RedisTarget) -> list[tuple[str, Any]]:
    """The endpoint itself when it is a replica (a reader endpoint), else the replicas its
    primary lists in INFO replication (reachable from here or not: tried at scan time)."""
    import redis

    from closeup_ops.connect.redis import connection_kwargs

    try:
        info = target.client.info("replication")
    except redis.RedisError:  # INFO refused (an ACL user without it): no replica known
        return []
    if info.get("role") == "slave":
        return [(target.endpoint, target.client)]
    out = []
    for name, value in sorted(info.items()):
        if name.startswith("slave") and isinstance(value, dict) and "ip" in value:
            host, port = str(value["ip"]), int(value["port"])
            kwargs = dict(connection_kwargs(target.settings), host=host, port=port)
            kwargs["db"] = target.settings.db
            kwargs.setdefault("connection_class", redis.Connection)
            client = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
            out.append((f"{host}:{port}", client))
    return out


def choose_parallel(asked: int | None, shards: list[Shard]) -> int:
    """Shards worked at once: `asked` (--parallel) when given. By default every shard at
    once up to DEFAULT_PARALLEL, since remote nodes each work on their own host while our
    threads wait; but when every node to read is on this machine (a loopback address: a
    local cluster, or the local ends of a tunnel, whose proxy and ssh run here), the nodes
    share this machine's cores with each other and with us, so at most as many as it has
    cores: more only makes them take turns with cold caches (measured on 2 cores: 6 local
    primaries at once cost their servers 40-65% more CPU than one after the other, 2 at
    once no more; benchmarks/RESULTS.md)."""
    if asked is not None:
        return asked
    n = min(DEFAULT_PARALLEL, max(1, len(shards)))
    if shards and all(on_this_machine(a) for s in shards for a in s.addresses()):
        n = min(n, machine_cores())
    return n


def on_this_machine(address: str) -> bool:
    """A node at a loopback address (or `localhost`) runs on this machine. Names are not
    resolved here (a VPC name may resolve only on a bastion): a name is taken as remote."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --- the slot map -------------------------------------------------------------------------


def slot_map(target: RedisTarget) -> tuple[tuple[int, int, bytes], ...] | None:
    """(first slot, last slot, primary's node id) for every range, from the first primary
    that answers CLUSTER SLOTS; None in standalone mode or when none answers."""
    if not target.cluster:
        return None
    for address, client in target.primaries():
        try:
            chan = NodeChannel(address, client)
        except Exception:  # this one is gone: ask another
            continue
        try:
            (reply,) = chan.request(pack("CLUSTER", "SLOTS"), 1)
        except Exception:
            continue
        finally:
            chan.close()
        if isinstance(reply, Exception):
            continue
        return tuple(sorted((int(r[0]), int(r[1]), bytes(r[2][2])) for r in reply))
    return None


# --- the worker pool ------------------------------------------------------------------------


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()  # a job finished
_EXIT = object()  # a worker thread has no more jobs


def fan_out(
    jobs: list[Callable[[], Iterator[Any]]],
    parallel: int,
    stop: threading.Event,
) -> Iterator[tuple[int, Any]]:
    """(job index, item) from every job's generator; (index, DONE) once a job is finished.

    At most `parallel` jobs run at a time, in threads. A job's exception is raised here
    (the others are stopped first). Closing this generator (--limit reached, Ctrl-C, an
    error) sets `stop` and waits for the workers to leave: each closes its generator,
    whose own clean-up runs (a delete drains and counts its UNLINKs in flight).

    With one job or parallel == 1 the jobs run here, one after the other, in this thread:
    the sequential path, with no thread at all."""
    if parallel <= 1 or len(jobs) <= 1:
        yield from _sequential(jobs, stop)
        return
    feed: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=QUEUE_PER_WORKER * parallel)
    lock = threading.Lock()
    todo = iter(range(len(jobs)))

    def put(item: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                feed.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            while not stop.is_set():
                with lock:
                    index = next(todo, None)
                if index is None:
                    break
                if not _run_job(index, jobs[index], put, stop):
                    break
        finally:
            put((-1, _EXIT))

    threads = [
        threading.Thread(target=worker, name=f"shard-{i}", daemon=True)
        for i in range(min(parallel, len(jobs)))
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            index, item = feed.get()
            if item is _EXIT:
                running -= 1
            elif isinstance(item, _Failed):
                raise item.exc
            else:
                yield index, item
    finally:
        stop.set()
        for thread in threads:
            while thread.is_alive():
                _empty(feed)  # a worker blocked on a full queue sees `stop` next time
                thread.join(0.05)


def _run_job(
    index: int, job: Callable[[], Iterator[Any]], put: Callable[[Any], bool], stop: Any
) -> bool:
    """One job in a worker thread; False when the run is over (stopped or failed)."""
    gen = None
    try:
        gen = job()
        for item in gen:
            if not put((index, item)):
                return False
        return put((index, _DONE))
    except Cancelled:
        return False
    except BaseException as exc:  # handed to the consumer, raised there
        put((index, _Failed(exc)))
        return False
    finally:
        if gen is not None:
            try:
                gen.close()
            except Exception:  # the run is over either way
                pass


def _sequential(jobs: list[Callable[[], Iterator[Any]]], stop: threading.Event) -> Iterator:
    for index, job in enumerate(jobs):
        gen = job()
        try:
            for item in gen:
                yield index, item
        finally:
            gen.close()
        yield index, _DONE
    stop.set()


def _empty(feed: queue.Queue) -> None:
    try:
        while True:
            feed.get_nowait()
    except queue.Empty:
        pass


DONE = _DONE
