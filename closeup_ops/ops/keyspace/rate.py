"""`--rate N`: a token bucket per node over the commands actually sent.

A pipelined batch of 300 PTTLs counts 300 commands; a SCAN counts one. The bucket holds a
tenth of a second of commands, so a burst never exceeds what the server would see in
100 ms at the rate asked for, and over a run the server sees at most
`rate * elapsed + burst` commands from us: a send waits until the bucket has paid for it
(a send larger than the bucket waits for the difference), which keeps the average exact.
"""

from __future__ import annotations

import threading
import time


class Cancelled(Exception):
    """The run was stopped (Ctrl-C, another shard failed) while waiting for tokens."""


class RateLimiter:
    def __init__(self, rate: float, stop: threading.Event | None = None):
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.rate = float(rate)
        self.burst = max(1, int(rate / 10))
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self._stop = stop
        self.sent = 0  # commands counted so far

    def take(self, n: int) -> None:
        """Count n commands about to be sent; sleeps until the bucket has paid for them."""
        if n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            self.sent += n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)

    def _sleep(self, seconds: float) -> None:
        if self._stop is None:
            time.sleep(seconds)
        elif self._stop.wait(seconds):
            raise Cancelled()
