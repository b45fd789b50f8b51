"""Run triage's parts side by side, each bounded: a part that raises, that the engine
refuses, or that has not answered by the deadline comes back as "unavailable: why"
instead of stopping the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any


class Unavailable(Exception):
    """A part (or a piece of one) cannot be had; the message says why."""


@dataclass
class Part:
    name: str
    ok: bool
    why: str | None  # when not ok: "refused by the server: ...", "no answer within 5 s"
    seconds: float
    data: Any = None


def reason(exc: BaseException) -> str:
    """Why a part failed, in one line (the engine's own words when it refused)."""
    import redis

    if isinstance(exc, Unavailable):
        return str(exc)
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"refused by the server (no permission): {exc}"
    if isinstance(exc, redis.exceptions.ResponseError):
        return f"refused by the server: {exc}"
    if isinstance(exc, redis.exceptions.TimeoutError):
        return "no answer within --timeout"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return f"connection failed: {exc}"
    from closeup_ops.errors import OpsError

    if isinstance(exc, OpsError):
        return exc.line()
    return f"{type(exc).__name__}: {exc}"


def run_parts(
    jobs: dict[str, Callable[[dict[str, Future]], Any]], budget: float
) -> dict[str, Part]:
    """Start every job at once, each in its own daemon thread (a job gets the futures of
    all jobs, to wait on another's result); collect what finished within `budget` seconds.
    A part still running then is left behind: daemon threads do not hold up the exit, and
    its socket timeout ends it."""
    import threading

    from closeup_ops import errors

    started = time.monotonic()
    futures: dict[str, Future] = {name: Future() for name in jobs}
    ended: dict[str, float] = {}

    def run(name: str, job: Callable[[dict[str, Future]], Any]) -> None:
        try:
            result = job(futures)
        except BaseException as exc:  # noqa: BLE001 - handed to the report
            ended[name] = time.monotonic()
            futures[name].set_exception(exc)
        else:
            ended[name] = time.monotonic()
            futures[name].set_result(result)

    for name, job in jobs.items():
        threading.Thread(target=run, args=(name, job), name=f"triage-{name}", daemon=True).start()
    wait(list(futures.values()), timeout=budget)
    out: dict[str, Part] = {}
    for name, future in futures.items():
        took = round(ended.get(name, time.monotonic()) - started, 3)
        if not future.done():
            out[name] = Part(name, False, f"no answer within {budget:g} s", took)
            continue
        exc = future.exception()
        if exc is None:
            out[name] = Part(name, True, None, took, future.result())
        else:
            out[name] = Part(name, False, errors.scrub(reason(exc)), took)
    return out


def after(futures: dict[str, Future], name: str) -> Any:
    """The result of another part (raises Unavailable when it failed)."""
    future = futures[name]
    try:
        return future.result()
    except Exception as exc:
        raise Unavailable(f"needs {name}, which failed: {reason(exc)}") from None


def each_node(nodes: list[tuple[str, Any]], fn: Callable[[Any], Any]) -> list[tuple[str, Any]]:
    """fn(client) for every node, up to 16 at a time: [(address, result or exception)],
    in the nodes' order. A node's failure is its result, not everyone's."""
    from concurrent.futures import ThreadPoolExecutor

    def safe(client: Any) -> Any:
        try:
            return fn(client)
        except Exception as exc:  # noqa: BLE001 - the caller reports it per node
            return exc

    if len(nodes) <= 1:
        return [(address, safe(client)) for address, client in nodes]
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        results = list(pool.map(safe, [client for _, client in nodes]))
    return [(address, r) for (address, _), r in zip(nodes, results, strict=True)]
