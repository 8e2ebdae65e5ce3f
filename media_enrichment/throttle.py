"""Rate control for provider calls: requests and tokens per minute, and adaptive concurrency.

Everything here is thread-safe and has no Prefect import: the flow may inject limiters of its own
(``media_enrichment_prefect.tasks.limits.PrefectRateLimiter``, backed by Prefect global concurrency limits) through
``build_gates(settings, limiters=...)``.

- ``TokenBucket``: a local rate limiter (continuous refill, blocking ``acquire``). It starts
  empty when first used (however long after it was made) and holds at most ``burst`` tokens
  (one second of the rate by default), so a run never opens with a burst that a service-side
  per-minute window would throttle: from the first grant, at most ``rate * t`` units in the
  first ``t`` seconds, and at most ``burst + rate * t`` in any later interval of ``t`` seconds.
  Waiters are served in the order they asked (each reserves its tokens, then sleeps until they
  are due).
- ``AdaptiveConcurrency``: a semaphore whose limit moves with the service's answers (AIMD):
  throttling halves it (at most once per ``cooldown_s``), successes grow it back by one per
  ``limit`` successes, never above ``max_in_flight``. With ``tolerance`` > 0 it ignores
  throttling that stays below that share of recent calls (random throttling, retried by
  botocore anyway) and reacts only to sustained throttling.
- ``ModelGate``: what one model's calls go through: ``with gate.call(tokens=n): ...`` takes a
  concurrency slot, then one request and ``n`` tokens from the rate limiters. ``throttled()``
  and ``succeeded()`` feed the adaptive limit (the Bedrock provider calls them from a botocore
  hook, once per HTTP attempt); ``stats()`` gives counters for benchmarks and logs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from media_enrichment.config import Settings

__all__ = [
    "LIMIT_NAMES",
    "THROTTLE_TOLERANCE",
    "THROTTLE_WINDOW",
    "AdaptiveConcurrency",
    "ModelGate",
    "RateLimiter",
    "TokenBucket",
    "build_gates",
]

#: Keys of ``build_gates(limiters=...)`` (also the Prefect global concurrency limit names).
LIMIT_NAMES = ("describer-rpm", "describer-tpm", "embedder-rpm")
#: Share of throttled calls among the last ``THROTTLE_WINDOW`` that ``build_gates`` tolerates
#: before cutting concurrency: sporadic throttling is retried by botocore; cutting concurrency
#: for it would starve the run (AIMD under random loss settles far below the quota).
THROTTLE_TOLERANCE = 0.15
THROTTLE_WINDOW = 50

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@runtime_checkable
class RateLimiter(Protocol):
    """Anything that blocks until ``amount`` units may be used (requests or tokens)."""

    def acquire(self, amount: int = 1) -> Any:  # pragma: no cover - protocol
        """Block until ``amount`` units are granted."""
        ...


class TokenBucket:
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


class AdaptiveConcurrency:
    """A semaphore with a moving limit: AIMD on the service's throttling.

    ``on_throttle()`` halves the limit (``decrease``), at most once per ``cooldown_s`` and not
    below ``min_in_flight``; ``on_success()`` adds one after ``limit`` successes since the last
    change, not above ``max_in_flight``. Calls already in flight above a lowered limit finish;
    new ones wait until the count is below it.

    With ``tolerance`` > 0 a throttle only cuts the limit when more than ``tolerance * window``
    of the last ``window`` outcomes (since the last cut) were throttled.
    """

    def __init__(
        self,
        max_in_flight: int,
        *,
        min_in_flight: int = 1,
        initial: int | None = None,
        cooldown_s: float = 1.0,
        decrease: float = 0.5,
        tolerance: float = 0.0,
        window: int = THROTTLE_WINDOW,
        clock: Clock = time.monotonic,
    ):
        """Create the limiter.

        Args:
            max_in_flight: the ceiling (and the start, unless ``initial`` is given).
            min_in_flight: the floor, at least 1.
            initial: the starting limit.
            cooldown_s: least time between two cuts.
            decrease: factor applied on a cut (0 < decrease < 1).
            tolerance: share of throttled outcomes tolerated without a cut (0: any throttle cuts).
            window: outcomes considered for ``tolerance``.
            clock: monotonic clock in seconds (injectable for tests).

        Raises:
            ValueError: inconsistent bounds.
        """
        if min_in_flight < 1 or max_in_flight < min_in_flight:
            raise ValueError(f"need 1 <= min_in_flight <= max_in_flight, got {min_in_flight}, {max_in_flight}")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        if not 0 <= tolerance < 1:
            raise ValueError("tolerance must be within [0, 1)")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.max_in_flight = int(max_in_flight)
        self.min_in_flight = int(min_in_flight)
        start = self.max_in_flight if initial is None else int(initial)
        self._limit = min(self.max_in_flight, max(self.min_in_flight, start))
        self.cooldown_s = float(cooldown_s)
        self.decrease = float(decrease)
        self.tolerance = float(tolerance)
        self.window = int(window)
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._successes = 0  # since the last change of the limit
        self._recent: deque[bool] = deque(maxlen=self.window)  # True = throttled
        self._last_cut = -math.inf
        self.cuts = 0
        self.increases = 0
        self.lowest = self._limit
        self.waits = 0

    @property
    def limit(self) -> int:
        """The current limit."""
        with self._cond:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        with self._cond:
            return self._in_flight

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a slot.

        Args:
            timeout: seconds to wait at most (None: no limit).

        Returns:
            Whether a slot was taken (False only on timeout).
        """
        with self._cond:
            if self._in_flight >= self._limit:
                self.waits += 1
                if not self._cond.wait_for(lambda: self._in_flight < self._limit, timeout):
                    return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("release() without acquire()")
            self._in_flight -= 1
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def on_throttle(self) -> bool:
        """Record a throttled call; maybe cut the limit.

        Returns:
            Whether the limit was cut.
        """
        with self._cond:
            self._recent.append(True)
            now = self._clock()
            if now - self._last_cut < self.cooldown_s:
                return False
            if sum(self._recent) <= self.tolerance * self.window:
                return False
            new = max(self.min_in_flight, int(self._limit * self.decrease))
            self._last_cut = now
            self._recent.clear()
            self._successes = 0
            if new == self._limit:
                return False
            self._limit = new
            self.cuts += 1
            self.lowest = min(self.lowest, new)
            return True

    def on_success(self) -> bool:
        """Record a successful call; maybe raise the limit by one.

        Returns:
            Whether the limit was raised.
        """
        with self._cond:
            self._recent.append(False)
            self._successes += 1
            if self._limit >= self.max_in_flight or self._successes < self._limit:
                return False
            self._limit += 1
            self._successes = 0
            self.increases += 1
            self._cond.notify()
            return True

    def __repr__(self) -> str:
        return f"AdaptiveConcurrency(limit={self.limit}, max_in_flight={self.max_in_flight})"


class ModelGate:
    """What one model's calls go through: concurrency slot, request budget, token budget.

    ``with gate.call(tokens=n): invoke()`` waits for a concurrency slot (held during the call),
    then for one request from ``requests`` and ``n`` units from ``tokens``, right before the call
    is sent. Report each HTTP attempt's outcome with ``throttled()`` / ``succeeded()``.
    ``retry_budget()`` takes one more request from ``requests`` for an attempt botocore is about
    to repeat (a retry is another request against the per-minute quota).
    """

    def __init__(
        self,
        name: str = "model",
        *,
        requests: RateLimiter | None = None,
        tokens: RateLimiter | None = None,
        concurrency: AdaptiveConcurrency | None = None,
        clock: Clock = time.monotonic,
    ):
        """Create a gate.

        Args:
            name: for logs and stats.
            requests: requests-per-minute limiter (None: no cap).
            tokens: tokens-per-minute limiter (None: no cap).
            concurrency: adaptive concurrency (None: no cap on calls in flight).
            clock: monotonic clock in seconds (for the wait statistics).
        """
        self.name = name
        self.requests = requests
        self.tokens = tokens
        self.concurrency = concurrency
        self._clock = clock
        self._lock = threading.Lock()
        self.calls = 0
        self.attempts = 0  # HTTP attempts reported (successes + throttles + retried errors)
        self.successes = 0
        self.throttles = 0
        self.retries_charged = 0
        self.tokens_requested = 0
        self.waits = 0  # calls that waited more than 1 ms for the gate
        self.waited_s = 0.0
        self.max_wait_s = 0.0

    @property
    def active(self) -> bool:
        """Whether the gate limits anything."""
        return any(x is not None for x in (self.requests, self.tokens, self.concurrency))

    @contextmanager
    def call(self, *, tokens: int = 0) -> Iterator[None]:
        """Hold the gate for one call.

        Args:
            tokens: estimated tokens of the call, taken from the token budget.
        """
        started = self._clock()
        if self.concurrency is not None:
            self.concurrency.acquire()
        try:
            if self.requests is not None:
                self.requests.acquire(1)
            if self.tokens is not None and tokens > 0:
                self.tokens.acquire(int(tokens))
            waited = self._clock() - started
            with self._lock:
                self.calls += 1
                self.tokens_requested += max(0, int(tokens))
                self.waited_s += waited
                self.max_wait_s = max(self.max_wait_s, waited)
                if waited > 0.001:
                    self.waits += 1
            yield
        finally:
            if self.concurrency is not None:
                self.concurrency.release()

    def throttled(self) -> None:
        """One attempt was throttled (HTTP 429): count it and let the concurrency back off."""
        with self._lock:
            self.throttles += 1
            self.attempts += 1
        if self.concurrency is not None:
            self.concurrency.on_throttle()

    def succeeded(self) -> None:
        """One attempt succeeded: count it and let the concurrency grow back."""
        with self._lock:
            self.successes += 1
            self.attempts += 1
        if self.concurrency is not None:
            self.concurrency.on_success()

    def retry_budget(self) -> None:
        """Take one request from the request budget for a retried attempt (blocks)."""
        with self._lock:
            self.retries_charged += 1
        if self.requests is not None:
            self.requests.acquire(1)

    @property
    def limit(self) -> int | None:
        """The current concurrency limit (None: unlimited)."""
        return self.concurrency.limit if self.concurrency is not None else None

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and logs (JSON-friendly)."""
        with self._lock:
            out: dict[str, Any] = {
                "name": self.name,
                "calls": self.calls,
                "attempts": self.attempts,
                "successes": self.successes,
                "throttles": self.throttles,
                "retries_charged": self.retries_charged,
                "tokens_requested": self.tokens_requested,
                "waits": self.waits,
                "waited_s": round(self.waited_s, 3),
                "max_wait_s": round(self.max_wait_s, 3),
            }
        c = self.concurrency
        if c is not None:
            out.update(limit=c.limit, lowest_limit=c.lowest, max_in_flight=c.max_in_flight, cuts=c.cuts, increases=c.increases)
        for key, limiter in (("rpm", self.requests), ("tpm", self.tokens)):
            if isinstance(limiter, TokenBucket):
                out[key] = limiter.rate_per_minute
            elif limiter is not None:
                out[key] = repr(limiter)
        return out

    def __repr__(self) -> str:
        return f"ModelGate({self.name!r}, requests={self.requests!r}, tokens={self.tokens!r}, concurrency={self.concurrency!r})"


def build_gates(
    settings: Settings,
    *,
    limiters: Mapping[str, RateLimiter] | None = None,
    max_in_flight: int | None = None,
) -> tuple[ModelGate, ModelGate]:
    """The describer's and the embedder's gates for one run.

    Request and token limits come from ``describer_rpm``, ``describer_tpm`` and
    ``embedder_rpm`` (local ``TokenBucket``s), unless ``limiters`` holds one under
    ``"describer-rpm"``, ``"describer-tpm"`` or ``"embedder-rpm"`` (e.g. Prefect-backed, shared by
    every run and worker), which is used instead. With ``adaptive_concurrency`` each model's
    calls in flight are capped by an ``AdaptiveConcurrency`` starting at ``max_in_flight``.

    Args:
        settings: the run's settings.
        limiters: limiters to use instead of local buckets, by name.
        max_in_flight: ceiling of calls in flight per model (default: ``settings.concurrency``,
            one call per chunk task).

    Returns:
        ``(describer_gate, embedder_gate)``.
    """
    limiters = dict(limiters or {})
    unknown = set(limiters) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"unknown limiter names {sorted(unknown)}; expected some of {LIMIT_NAMES}")
    ceiling = max(1, int(max_in_flight or settings.concurrency))

    def limiter(name: str, per_minute: int | None) -> RateLimiter | None:
        if limiters.get(name) is not None:
            return limiters[name]
        return TokenBucket(per_minute) if per_minute else None

    def concurrency() -> AdaptiveConcurrency | None:
        if not settings.adaptive_concurrency:
            return None
        return AdaptiveConcurrency(ceiling, tolerance=THROTTLE_TOLERANCE, window=THROTTLE_WINDOW)

    describer = ModelGate(
        "describer",
        requests=limiter("describer-rpm", settings.describer_rpm),
        tokens=limiter("describer-tpm", settings.describer_tpm),
        concurrency=concurrency(),
    )
    embedder = ModelGate("embedder", requests=limiter("embedder-rpm", settings.embedder_rpm), concurrency=concurrency())
    return describer, embedder
