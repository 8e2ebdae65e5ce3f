"""The call window: how many calls to one model may be in flight, found from the service's answers.

``CallWindow`` is a semaphore whose limit moves:

- **Growth.** It starts at ``initial`` and grows toward its target only while it is the limit:
  a call that found the window full (it took the last slot, or waited for one) says the window
  held calls back; calls sent with slots to spare say nothing about a larger window (the calls'
  supply was the limit, as at the tail of a run or on a client whose CPU is busy), so it stays
  where it is (TCP's congestion-window validation, RFC 7661).

  - With a known rate (``rate()``: the calls per second the gate's token buckets allow), the
    target is Little's law: ``ceil(rate × latency × headroom) + 1`` calls, ``latency`` being
    the moving average of the calls' measured latency, so the window carries the rate and no
    more. It grows by one per completed call that found it full (slow start: it doubles every
    round trip), and shrinks by one per call while it is above the target.
  - Without one (no quota set, or a limiter shared through Prefect whose rate is not known
    here), the window moves once per round trip: ``limit`` completions, measured over
    ``MIN_ROUND_TRIP_S`` at least so that millisecond answers are not judged on the noise of a
    few of them. Only a round trip in which most calls found the window full is judged. When
    its calls per second beat the best so far by ``PLATEAU_GAIN`` the window doubles (slow
    start), up to the cap; when a larger window brings no more calls per second for
    ``PLATEAU_ROUND_TRIPS`` round trips in a row (the service or this machine's CPU is the
    limit) it goes back to the window that brought the best rate and holds; it grows again if
    the rate rises later. A round trip in which most calls waited for the rate limiter does
    not grow it either.

    Holding the window where the rate stops rising matters even when the service could take
    more: each call in flight is a thread of this process, and on a client whose CPU is the
    limit, threads that only queue for Python's interpreter lock cost CPU in hand-offs (on a
    zero-latency server, windows that crept to 20-32 calls where 4-8 carried the same rate
    made twice the context switches of a bare boto3 loop per image).

- **Back-off (AIMD).** Sustained throttling halves the limit, at most once per ``cooldown_s``
  (with ``tolerance``, throttling that stays below that share of the last ``window`` outcomes
  is ignored: botocore retries it anyway); growth after a cut is additive: one per ``limit``
  completed calls with a known rate, one per round trip without.

- **Cap.** Never above ``max_in_flight`` (``Settings.concurrency``, 32 calls per model by
  default): a run with nothing set cannot have more calls to a model in flight than that.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from media_enrichment.ratecontrol.buckets import Clock

__all__ = [
    "HEADROOM", "INITIAL_WINDOW", "MIN_ROUND_TRIP_S", "PLATEAU_GAIN", "PLATEAU_ROUND_TRIPS", "THROTTLE_TOLERANCE",
    "THROTTLE_WINDOW", "CallWindow",
]

#: Share of throttled calls among the last ``THROTTLE_WINDOW`` that ``build_gates`` tolerates
#: before cutting the window: sporadic throttling is retried by botocore; cutting the window for
#: it would starve the run (AIMD under random loss settles far below the quota).
THROTTLE_TOLERANCE = 0.15
THROTTLE_WINDOW = 50

#: Calls in flight a window starts with (it doubles every round trip from there), and the least a
#: window without a known rate gives back to. The first round trip always doubles it (there is no
#: rate to beat yet): from 4, windows reached 8-16 against a zero-latency server where 2-4 per
#: model carried the same rate, and the run made 45-55 context switches an image; from 2, they
#: settle at 2-4 and the run makes 29-34, the bare boto3 loop's 25-29. Against Bedrock it costs
#: one round trip more at the start.
INITIAL_WINDOW = 2
#: Little's law target's margin over rate × latency (latency jitter, the gate's own waits).
HEADROOM = 1.25
#: Without a known rate, a round trip must complete this many times the best calls per second
#: so far for the window to keep growing (slow start doubles it: an unsaturated service answers
#: about twice as many).
PLATEAU_GAIN = 1.2
#: Round trips in a row that must bring no more calls per second before the window holds. With
#: one, a benchmark run once held Claude's window at 11 calls (it had reached 22) where the
#: service took 32, and the run took 29 s instead of 12: one round trip slowed by something
#: else (the client's CPU, a chunk starting) must not decide.
PLATEAU_ROUND_TRIPS = 2
#: Least time a round trip's calls per second are measured over (more completions than the
#: window when the calls are that fast). Against a service that answers in milliseconds, a
#: round trip of a window's completions lasts a few: its rate is the noise of this process's
#: thread scheduling (measured on a zero-latency server: 38 to 420 calls a second in round
#: trips in a row of a run at a steady 300), and a window held on it stopped anywhere from 6 to
#: 32. At Bedrock's latencies (a Claude call takes seconds) a round trip is longer anyway.
MIN_ROUND_TRIP_S = 0.1
#: Weight of a new sample in the latency's moving average.
_EWMA = 0.1


class CallWindow:
    """A semaphore whose limit is the window of calls in flight (see the module docstring).

    Feed it: ``observe(latency_s, rate_waited=...)`` after each completed call (growth),
    ``on_throttle()`` / ``on_success()`` after each HTTP attempt (back-off).
    """

    def __init__(
        self,
        max_in_flight: int,
        *,
        min_in_flight: int = 1,
        initial: int | None = None,
        rate: Callable[[], float | None] | None = None,
        cooldown_s: float = 1.0,
        decrease: float = 0.5,
        tolerance: float = 0.0,
        window: int = THROTTLE_WINDOW,
        clock: Clock = time.monotonic,
    ):
        """Create the window.

        Args:
            max_in_flight: the cap.
            min_in_flight: the floor, at least 1.
            initial: the starting limit (default: the cap, which makes a fixed window that
                only throttling moves, until ``observe`` is fed; ``build_gates`` starts at
                ``INITIAL_WINDOW``).
            rate: the calls per second the rate limits allow, or None when unknown (Little's
                law needs it; without it the window grows to the cap while latency holds).
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
        self._rate = rate
        self.cooldown_s = float(cooldown_s)
        self.decrease = float(decrease)
        self.tolerance = float(tolerance)
        self.window = int(window)
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._credit = 0  # completions since the limit last moved (additive steps)
        self._recent: deque[bool] = deque(maxlen=self.window)  # True = throttled
        self._last_cut = -math.inf
        self._slow_start = True  # until the first cut
        self._latency: float | None = None  # moving average, seconds
        self._growing = True  # without a known rate: until the calls per second stop rising
        self._epoch_started: float | None = None  # the current round trip's start
        self._epoch_calls = 0
        self._epoch_full = 0  # completions of the current round trip that found the window full
        self._epoch_waited = 0  # ... that waited for the rate limiter
        self._epoch_peak = 0  # most calls in flight during it
        self._epoch_size = INITIAL_WINDOW
        self._best_rate = 0.0  # most calls per second completed in a round trip
        self._best_window = self._limit  # the window during that round trip
        self._flat = 0  # round trips in a row that brought no more calls per second
        self.cuts = 0
        self.increases = 0
        self.lowest = self._limit
        self.highest = self._limit
        self.waits = 0
        self.peak_in_flight = 0
        self.plateaus = 0

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

    @property
    def latency_s(self) -> float | None:
        """The calls' moving-average latency (None before the first observed call)."""
        with self._cond:
            return self._latency

    def target(self) -> int:
        """Where growth stops now: Little's law with a known rate, else the cap."""
        with self._cond:
            return self._target(self._rate() if self._rate is not None else None)

    def _target(self, rate: float | None) -> int:
        if rate is None or self._latency is None:
            return self.max_in_flight
        needed = math.ceil(rate * self._latency * HEADROOM) + 1
        return min(self.max_in_flight, max(self.min_in_flight, needed))

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
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            self._epoch_peak = max(self._epoch_peak, self._in_flight)
            return True

    def is_full(self) -> bool:
        """Whether every slot is taken (a call that just took one found the window binding)."""
        with self._cond:
            return self._in_flight >= self._limit

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

    def observe(self, latency_s: float, *, rate_waited: bool = False, window_full: bool = True) -> None:
        """One call completed: record its latency and maybe move the limit toward its target.

        Args:
            latency_s: the call's latency (sent to answered, botocore's retries included).
            rate_waited: the rate limiter made this call wait (the rate is reached).
            window_full: the call found the window full when it took its slot (``is_full``
                right after ``acquire``); a call sent with slots to spare never grows it.
        """
        with self._cond:
            now = self._clock()
            self._latency = latency_s if self._latency is None else (1 - _EWMA) * self._latency + _EWMA * latency_s
            rate = self._rate() if self._rate is not None else None
            if rate is None:
                self._round_trip(now, window_full=window_full, rate_waited=rate_waited)
                return
            target = self._target(rate)
            self._credit += 1
            if self._limit > target:  # the rate needs fewer calls in flight than the window holds
                self._set(max(target, self._limit - 1))
            elif window_full and self._limit < target and (self._slow_start or self._credit >= self._limit):
                self._set(self._limit + 1)

    def _round_trip(self, now: float, *, window_full: bool, rate_waited: bool) -> None:
        """Without a known rate: count a completion in the current round trip (``limit``
        completions, and ``MIN_ROUND_TRIP_S`` at least); at its end, judge it (see the module
        docstring), and start the next one at the limit it left."""
        if self._epoch_started is None:
            self._start_round_trip(now)
            return
        self._epoch_calls += 1
        self._epoch_full += window_full
        self._epoch_waited += rate_waited
        elapsed = now - self._epoch_started
        if self._epoch_calls < self._epoch_size or elapsed < MIN_ROUND_TRIP_S:
            return
        self._judge(self._epoch_calls / elapsed)  # elapsed >= MIN_ROUND_TRIP_S > 0
        self._start_round_trip(now)

    def _judge(self, rate: float) -> None:
        """Move the limit after a round trip that completed ``rate`` calls per second: grow,
        hold, go back to the window of the best rate, or give back slots no call used."""
        calls = self._epoch_calls
        if 2 * self._epoch_full < calls:  # the supply of calls, not the window, set this round trip's pace
            if self._epoch_peak < self._limit and self._limit > INITIAL_WINDOW:
                self._set(max(INITIAL_WINDOW, self.min_in_flight, self._epoch_peak))  # slots no call used
            return
        if 2 * self._epoch_waited >= calls:
            return  # the rate limiter, not the window, set this round trip's pace
        if not self._slow_start:  # after a cut: additive, one more per round trip
            self._set(min(self.max_in_flight, self._limit + 1))
            return
        if rate >= PLATEAU_GAIN * self._best_rate:
            self._best_rate, self._best_window = rate, self._limit
            self._growing, self._flat = True, 0
            self._set(min(self.max_in_flight, 2 * self._limit))
            return
        self._flat += 1
        if self._flat < PLATEAU_ROUND_TRIPS:
            return  # one slow round trip (a pause of the client, a chunk starting) is not a plateau yet
        if self._growing and (self._limit < self.max_in_flight or self._best_window < self._limit):
            # A larger window brought no more calls per second: back to the one that did as well.
            self._growing = False
            self.plateaus += 1
            if self._best_window < self._limit:
                self._set(self._best_window)

    def _start_round_trip(self, now: float) -> None:
        # A round trip is as many completions as calls in flight at its start.
        self._epoch_started, self._epoch_calls, self._epoch_full, self._epoch_waited = now, 0, 0, 0
        self._epoch_peak = self._in_flight
        self._epoch_size = max(INITIAL_WINDOW, self._limit)

    def _set(self, limit: int) -> None:
        grew = limit > self._limit
        self._limit = limit
        self._credit = 0
        if grew:
            self.increases += 1
            self.highest = max(self.highest, limit)
            self._cond.notify(limit)
        self.lowest = min(self.lowest, limit)

    def on_throttle(self) -> bool:
        """Record a throttled attempt; maybe cut the limit.

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
            self._slow_start = False
            self._epoch_started = None  # the next round trip is measured at the new limit
            if new == self._limit:
                return False
            self._set(new)
            self.cuts += 1
            return True

    def on_success(self) -> None:
        """Record an attempt that was not throttled (for the throttling share)."""
        self._recent.append(False)  # a bounded deque's append is atomic: no lock on the hot path

    def __repr__(self) -> str:
        return f"CallWindow(limit={self.limit}, max_in_flight={self.max_in_flight})"
