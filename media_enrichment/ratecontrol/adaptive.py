"""Adaptive concurrency: how many calls may be in flight, moved by the service's answers (AIMD).

``AdaptiveConcurrency`` is a semaphore whose limit throttling halves (at most once per
``cooldown_s``) and successes grow back by one per ``limit`` successes, never above
``max_in_flight``. With ``tolerance`` > 0 it ignores throttling that stays below that share of
recent calls (random throttling, retried by botocore anyway) and reacts only to sustained
throttling.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from media_enrichment.ratecontrol.buckets import Clock

__all__ = ["THROTTLE_TOLERANCE", "THROTTLE_WINDOW", "AdaptiveConcurrency"]

#: Share of throttled calls among the last ``THROTTLE_WINDOW`` that ``build_gates`` tolerates
#: before cutting concurrency: sporadic throttling is retried by botocore; cutting concurrency
#: for it would starve the run (AIMD under random loss settles far below the quota).
THROTTLE_TOLERANCE = 0.15
THROTTLE_WINDOW = 50


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
