"""The gate: what one model's calls pass through, and ``build_gates`` that makes them from settings.

``with gate.call(tokens=n): ...`` takes a concurrency slot (``AdaptiveConcurrency``), then one
request and ``n`` tokens from the gate's limiters (``TokenBucket`` or any ``Limiter``) right
before the call is sent. ``throttled()`` and ``succeeded()`` feed the adaptive limit (the
Bedrock provider calls them from a botocore hook, once per HTTP attempt:
``media_enrichment.providers.bedrock.hooks``); ``stats()`` gives counters for benchmarks and logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from media_enrichment.config import Settings
from media_enrichment.ratecontrol.adaptive import THROTTLE_TOLERANCE, THROTTLE_WINDOW, AdaptiveConcurrency
from media_enrichment.ratecontrol.buckets import Clock, Limiter, TokenBucket

__all__ = ["LIMIT_NAMES", "ModelGate", "build_gates"]

#: Keys of ``build_gates(limiters=...)`` (also the Prefect global concurrency limit names).
LIMIT_NAMES = ("describer-rpm", "describer-tpm", "embedder-rpm")


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
        requests: Limiter | None = None,
        tokens: Limiter | None = None,
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
        self._attempt("throttles", AdaptiveConcurrency.on_throttle)

    def succeeded(self) -> None:
        """One attempt succeeded: count it and let the concurrency grow back."""
        self._attempt("successes", AdaptiveConcurrency.on_success)

    def _attempt(self, counter: str, feed: Callable[[AdaptiveConcurrency], bool]) -> None:
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
    limiters: Mapping[str, Limiter] | None = None,
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

    def limiter(name: str, per_minute: int | None) -> Limiter | None:
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
