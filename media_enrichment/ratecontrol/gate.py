"""The gate: what one model's calls pass through, and ``build_gates`` that makes them from settings.

``with gate.call(tokens=n): ...`` takes a slot of the model's call window (``CallWindow``), then
one request and ``n`` tokens from the gate's limiters (``TokenBucket`` or any ``Limiter``) right
before the call is sent, and reports the call's latency to the window when it returns.
``throttled()`` and ``succeeded()`` feed the window's back-off (the Bedrock provider calls them
from a botocore hook, once per HTTP attempt: ``media_enrichment.providers.bedrock.hooks``);
``rate_per_s()`` is the rate the token buckets allow (the window's Little's-law target uses it);
``stats()`` gives counters for benchmarks and logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from media_enrichment.config import Settings
from media_enrichment.ratecontrol.window import INITIAL_WINDOW, THROTTLE_TOLERANCE, THROTTLE_WINDOW, CallWindow
from media_enrichment.ratecontrol.buckets import Clock, Limiter, TokenBucket

__all__ = ["LIMIT_NAMES", "ModelGate", "build_gates", "calls_in_flight"]

#: Keys of ``build_gates(limiters=...)`` (also the Prefect global concurrency limit names).
LIMIT_NAMES = ("describer-rpm", "describer-tpm", "embedder-rpm")

#: A call that waited longer than this for its request or tokens met the rate limit.
_RATE_WAIT_S = 0.005


class ModelGate:
    """What one model's calls go through: window slot, request budget, token budget.

    ``with gate.call(tokens=n): invoke()`` waits for a slot of the call window (held during the
    call), then for one request from ``requests`` and ``n`` units from ``tokens``, right before
    the call is sent; a call that returns reports its latency to the window. Report each HTTP
    attempt's outcome with ``throttled()`` / ``succeeded()``.
    ``retry_budget()`` takes one more request from ``requests`` for an attempt botocore is about
    to repeat (a retry is another request against the per-minute quota).
    """

    def __init__(
        self,
        name: str = "model",
        *,
        requests: Limiter | None = None,
        tokens: Limiter | None = None,
        concurrency: CallWindow | None = None,
        clock: Clock = time.monotonic,
    ):
        """Create a gate.

        Args:
            name: for logs and stats.
            requests: requests-per-minute limiter (None: no cap).
            tokens: tokens-per-minute limiter (None: no cap).
            concurrency: the call window (None: no cap on calls in flight).
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

    @contextmanager
    def call(self, *, tokens: int = 0) -> Iterator[None]:
        """Hold the gate for one call.

        Args:
            tokens: estimated tokens of the call, taken from the token budget.
        """
        started = self._clock()
        window = self.concurrency
        full = True
        if window is not None:
            window.acquire()
            full = window.is_full()
        try:
            slotted = self._clock()
            if self.requests is not None:
                self.requests.acquire(1)
            if self.tokens is not None and tokens > 0:
                self.tokens.acquire(int(tokens))
            sent = self._clock()
            waited = sent - started
            with self._lock:
                self.calls += 1
                self.tokens_requested += max(0, int(tokens))
                self.waited_s += waited
                self.max_wait_s = max(self.max_wait_s, waited)
                if waited > 0.001:
                    self.waits += 1
            yield
            if window is not None:
                window.observe(self._clock() - sent, rate_waited=sent - slotted > _RATE_WAIT_S, window_full=full)
        finally:
            if window is not None:
                window.release()

    def throttled(self) -> None:
        """One attempt was throttled (HTTP 429): count it and let the concurrency back off."""
        self._attempt("throttles", CallWindow.on_throttle)

    def succeeded(self) -> None:
        """One attempt succeeded: count it (the window's throttling share)."""
        self._attempt("successes", CallWindow.on_success)

    def _attempt(self, counter: str, feed: Callable[[CallWindow], object]) -> None:
        """Count one reported attempt under ``counter`` and feed its outcome to the concurrency."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.attempts += 1
        if self.concurrency is not None:
            feed(self.concurrency)

    def retry_budget(self) -> None:
        """Take one request from the request budget for a retried attempt (blocks)."""
        with self._lock:
            self.retries_charged += 1
        if self.requests is not None:
            self.requests.acquire(1)

    def rate_per_s(self) -> float | None:
        """Calls per second the gate's token buckets allow (None: no bucket, or a limiter of
        unknown rate such as a Prefect global limit): the lower of ``rpm / 60`` and
        ``tpm / 60`` divided by the mean tokens per call so far."""
        rates = []
        if isinstance(self.requests, TokenBucket):
            rates.append(self.requests.rate_per_second)
        if isinstance(self.tokens, TokenBucket):
            with self._lock:
                per_call = self.tokens_requested / self.calls if self.calls else 0
            if per_call > 0:
                rates.append(self.tokens.rate_per_second / per_call)
        return min(rates) if rates else None

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
            latency = c.latency_s
            out.update(
                limit=c.limit, lowest_limit=c.lowest, highest_limit=c.highest, max_in_flight=c.max_in_flight,
                cuts=c.cuts, increases=c.increases, peak_in_flight=c.peak_in_flight, latency_s=None if latency is None else round(latency, 4),
            )
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
    limiters: Mapping[str, Limiter] | None = None,
    max_in_flight: int | None = None,
) -> tuple[ModelGate, ModelGate]:
    """The describer's and the embedder's gates for one run.

    Request and token limits come from ``describer_rpm``, ``describer_tpm`` and
    ``embedder_rpm`` (local ``TokenBucket``s), unless ``limiters`` holds one under
    ``"describer-rpm"``, ``"describer-tpm"`` or ``"embedder-rpm"`` (e.g. Prefect-backed, shared by
    every run and worker), which is used instead. Each model's calls in flight go through a
    ``CallWindow`` capped at ``max_in_flight``: with ``adaptive_concurrency`` it starts at
    ``INITIAL_WINDOW`` and moves (Little's law on the buckets' rate, back-off on throttling);
    without, it stays at the cap.

    Args:
        settings: the run's settings.
        limiters: limiters to use instead of local buckets, by name.
        max_in_flight: cap of calls in flight per model (default: ``settings.concurrency``).

    Returns:
        ``(describer_gate, embedder_gate)``.
    """
    limiters = dict(limiters or {})
    unknown = set(limiters) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"unknown limiter names {sorted(unknown)}; expected some of {LIMIT_NAMES}")
    ceiling = max(1, int(max_in_flight or settings.concurrency))

    def limiter(name: str, per_minute: int | None) -> Limiter | None:
        if limiters.get(name) is not None:
            return limiters[name]
        return TokenBucket(per_minute) if per_minute else None

    def gate(name: str, requests: Limiter | None, tokens: Limiter | None = None) -> ModelGate:
        made = ModelGate(name, requests=requests, tokens=tokens)
        if settings.adaptive_concurrency:
            made.concurrency = CallWindow(
                ceiling, initial=min(ceiling, INITIAL_WINDOW), rate=made.rate_per_s, tolerance=THROTTLE_TOLERANCE,
                window=THROTTLE_WINDOW,
            )
        else:
            made.concurrency = CallWindow(ceiling, min_in_flight=ceiling)  # fixed: neither grows nor shrinks
        return made

    describer = gate(
        "describer", limiter("describer-rpm", settings.describer_rpm), limiter("describer-tpm", settings.describer_tpm)
    )
    embedder = gate("embedder", limiter("embedder-rpm", settings.embedder_rpm))
    return describer, embedder


def calls_in_flight(gate: ModelGate | None) -> int:
    """How many calls a provider behind ``gate`` can have in flight in one process: its window's
    cap (1 without a gate or window: one at a time)."""
    if gate is None or gate.concurrency is None:
        return 1
    return gate.concurrency.max_in_flight
