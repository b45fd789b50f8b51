"""Poll an application health URL during a failover test (the guide's "verify the app
continues"): one GET per interval, each status code or error recorded with its time."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class AppPoll:
    t: float  # seconds since the probe started
    status: int | None  # HTTP status, None when no answer
    error: str | None
    latency_ms: float

    @property
    def healthy(self) -> bool:
        return self.status is not None and 200 <= self.status < 400


def public_url(url: str) -> str:
    """The URL without user:password, for reports and the audit log."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def check_url(url: str) -> None:
    from closeup_ops.errors import UsageError

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--probe-url {public_url(url)} is not an http(s) URL",
            "pass e.g. --probe-url http://app.internal/health",
        )


class UrlPoller:
    """GET `url` every `interval` seconds on a background thread until stopped."""

    def __init__(self, url: str, interval: float, timeout: float, now: Callable[[], float]):
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.now = now
        self.polls: list[AppPoll] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-url", daemon=True)
        # No proxies from the environment: the health URL is usually internal.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self) -> UrlPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        next_at = self.now()
        while not self._stop.is_set():
            self.polls.append(self.poll())
            next_at = max(next_at + self.interval, self.now())
            self._stop.wait(max(0.0, next_at - self.now()))

    def poll(self) -> AppPoll:
        t = self.now()
        start = time.monotonic()
        status, error = None, None
        try:
            with self._opener.open(self.url, timeout=self.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except urllib.error.URLError as exc:
            error = _reason(exc.reason)
        except (TimeoutError, OSError) as exc:
            error = _reason(exc)
        except Exception as exc:  # a broken answer is a failed poll, not a crash
            error = type(exc).__name__.lower()
        return AppPoll(round(t, 4), status, error, round((time.monotonic() - start) * 1000, 3))


def _reason(reason: object) -> str:
    text = str(reason).lower()
    if "timed out" in text or isinstance(reason, TimeoutError):
        return "timeout"
    if "refused" in text:
        return "connection_refused"
    if "reset" in text:
        return "connection_reset"
    return type(reason).__name__.lower() if not isinstance(reason, str) else "error"
