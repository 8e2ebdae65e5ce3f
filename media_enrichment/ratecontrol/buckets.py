"""Token buckets: how fast requests and tokens may be taken, and the ``Limiter`` protocol.

``Limiter`` is what a ``ModelGate`` takes requests and tokens from: anything with a blocking
``acquire(amount)``. Two implement it: ``TokenBucket`` here (local to one process, costs
nothing) and ``media_enrichment_prefect.tasks.limits.PrefectRateLimiter`` (a Prefect global
concurrency limit with slot decay, shared by every run and worker).

``TokenBucket`` refills continuously. It starts empty when first used (however long after it
was made) and holds at most ``burst`` tokens (one second of the rate by default), so a run never
opens with a burst that a service-side per-minute window would throttle: from the first grant,
at most ``rate * t`` units in the first ``t`` seconds, and at most ``burst + rate * t`` in any
later interval of ``t`` seconds. Waiters are served in the order they asked (each reserves its
tokens, then sleeps until they are due).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Clock", "Limiter", "Sleep", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@runtime_checkable
class Limiter(Protocol):
    """Anything that blocks until ``amount`` units may be used (requests or tokens)."""

    def acquire(self, amount: int = 1) -> Any:  # pragma: no cover - protocol
        """Block until ``amount`` units are granted."""
        ...


class TokenBucket(Limiter):
    """A thread-safe token bucket refilled continuously at ``rate_per_minute``.

    ``acquire(n)`` reserves ``n`` tokens at once (the balance may go negative: later callers
    queue behind the debt) and then sleeps until they are due, so callers are served in the
    order they asked and nobody spins. ``n`` larger than the bucket works: it waits
    proportionally.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        initial: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ):
        """Create a bucket.

        Args:
            rate_per_minute: units granted per minute, > 0.
            burst: most units held after an idle period (default: one second of the rate, at
                least 1).
            initial: units available at the first acquisition (default 0: a fresh bucket
                starts at the rate, not with a burst, even if it was made long before).
            clock: monotonic clock in seconds (injectable for tests).
            sleep: how to wait (injectable for tests).

        Raises:
            ValueError: a non-positive rate or burst, or a negative initial balance.
        """
        if not rate_per_minute or rate_per_minute <= 0 or not math.isfinite(rate_per_minute):
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute!r}")
        self.rate_per_minute = float(rate_per_minute)
        self.rate_per_second = self.rate_per_minute / 60.0
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate_per_second)
        if self.capacity <= 0:
            raise ValueError(f"burst must be positive, got {burst!r}")
        if initial < 0:
            raise ValueError("initial must not be negative")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = min(float(initial), self.capacity)
        self._last: float | None = None  # the clock starts at the first acquisition
        self.granted = 0  # units handed out
        self.waits = 0  # acquisitions that had to wait
        self.waited_s = 0.0  # total scheduled waiting

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
            self._last = now

    def reserve(self, amount: int = 1) -> float:
        """Take ``amount`` tokens now and say how long to wait before using them.

        Args:
            amount: units to take (0 or less: nothing).

        Returns:
            Seconds until the tokens are due (0.0 if available now).
        """
        if amount <= 0:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            self._tokens -= amount
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_second
            self.granted += amount
            if wait > 0:
                self.waits += 1
                self.waited_s += wait
        return wait

    def acquire(self, amount: int = 1) -> float:
        """Block until ``amount`` tokens are granted.

        Args:
            amount: units to take.

        Returns:
            Seconds waited (as scheduled).
        """
        wait = self.reserve(amount)
        if wait > 0:
            self._sleep(wait)
        return wait

    @property
    def available(self) -> float:
        """Tokens available right now (negative: the debt queued callers are waiting out)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_minute={self.rate_per_minute:g}, burst={self.capacity:g})"
