"""What the test server injects and what it records.

``FaultPlan`` draws, from one seeded generator, at most one fault per request: a transport
fault (429 throttling or model not ready, 503, 500, 408 model timeout, or a stall longer than a
read timeout) for any model, or an answer fault (malformed, truncated, refused, hostile) for
Claude; it
also holds the added latency and a requests-per-minute quota, which ``Quota`` enforces over a
sliding window per model id. ``Counters`` record every request (a ``RequestRecord``) per model,
outcome, image hash and credential. All of it is thread-safe.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from media_enrichment.testing.errors import ServiceError

__all__ = ["ANSWER_OUTCOMES", "MAX_LATENCY_SECONDS", "MAX_STALL_SECONDS", "Counters", "FaultPlan", "Quota", "RequestRecord"]

MAX_STALL_SECONDS = 60.0
MAX_LATENCY_SECONDS = 30.0

_TRANSPORT_FAULTS = (
    # (FaultPlan field, outcome, status, error code, message)
    ("throttle_rate", "throttled", 429, "ThrottlingException", "Too many requests, please wait before trying again."),
    ("model_not_ready_rate", "not_ready", 429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    ("unavailable_rate", "unavailable", 503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    ("internal_error_rate", "internal_error", 500, "InternalServerException", "The server encountered an internal error while processing the request."),
    ("model_timeout_rate", "model_timeout", 408, "ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    ("stall_rate", "stalled", 0, "", ""),
)
_ANSWER_FAULTS = (
    ("malformed_rate", "malformed"),
    ("truncated_rate", "truncated"),
    ("refusal_rate", "refusal"),
    ("hostile_rate", "hostile"),
)
#: Answer fault (``FaultPlan`` field) -> the outcome a request with it is counted under.
ANSWER_OUTCOMES = dict(_ANSWER_FAULTS)
_FAULT_NAMES = frozenset(name for name, *_ in _TRANSPORT_FAULTS) | frozenset(ANSWER_OUTCOMES)


@dataclass
class FaultPlan:
    """Which faults the server injects, how often, and how slow it is. Thread-safe.

    Rates are probabilities per request and are mutually exclusive (one draw per request picks
    at most one fault), so they must sum to at most 1. Transport faults apply to every model;
    answer faults (malformed, truncated, refusal, hostile) only to Claude.
    """

    seed: int = 0
    #: Added latency in seconds per model family ("anthropic", "titan", or "*" for any).
    latency: Mapping[str, float] = field(default_factory=dict)
    #: Each latency varies uniformly by +/- this fraction.
    latency_jitter: float = 0.0
    throttle_rate: float = 0.0  # 429 ThrottlingException
    model_not_ready_rate: float = 0.0  # 429 ModelNotReadyException
    unavailable_rate: float = 0.0  # 503 ServiceUnavailableException
    internal_error_rate: float = 0.0  # 500 InternalServerException
    model_timeout_rate: float = 0.0  # 408 ModelTimeoutException
    stall_rate: float = 0.0  # no answer for ``stall_seconds`` (longer than the client's read timeout)
    stall_seconds: float = 2.0
    malformed_rate: float = 0.0  # text answer: prose around JSON, code fence, trailing comma, broken JSON
    truncated_rate: float = 0.0  # stop_reason max_tokens with a cut answer
    refusal_rate: float = 0.0  # a refusal instead of metadata
    #: A hostile answer: 100 KB texts, 10,000 keywords, escape sequences and control characters,
    #: markup, extra keys, nested junk, and (a third of the time) another tool's name.
    hostile_rate: float = 0.0
    #: Whether answer faults also hit corrective follow-up turns (requests with >1 message).
    faults_on_followups: bool = True
    #: A deterministic fault per image, before any random draw: called with a request's image
    #: facts (``ImageFacts``: sha256, media type, width, height), it returns a fault field name
    #: (``"throttle_rate"``, ``"refusal_rate"``, ...) for every request about that image, or None.
    #: For tests that need a given image to fail whatever order the requests arrive in.
    by_image: Callable[[Any], str | None] | None = None
    #: Requests per minute allowed per model id (429 ThrottlingException beyond); None = no quota.
    rpm_quota: int | None = None
    #: The quota is enforced over a sliding window of this many seconds, allowing
    #: ``rpm_quota * quota_window_s / 60`` requests in it (60: per minute, as the service).
    #: Benchmarks shorter than a minute use a few seconds, so the quota binds at its rate.
    quota_window_s: float = 60.0

    def __post_init__(self) -> None:
        rates = [getattr(self, name) for name, *_ in _TRANSPORT_FAULTS] + [
            getattr(self, name) for name, _ in _ANSWER_FAULTS
        ]
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(rates):.3f}, more than 1")
        if not 0 <= self.stall_seconds <= MAX_STALL_SECONDS:
            raise ValueError(f"stall_seconds must be within 0..{MAX_STALL_SECONDS}")
        if any(not 0 <= v <= MAX_LATENCY_SECONDS for v in self.latency.values()):
            raise ValueError(f"latency must be within 0..{MAX_LATENCY_SECONDS} s")
        if not 0 <= self.latency_jitter <= 1:
            raise ValueError("latency_jitter must be within 0..1")
        if self.rpm_quota is not None and self.rpm_quota < 1:
            raise ValueError("rpm_quota must be positive")
        if not 0 < self.quota_window_s <= 3600:
            raise ValueError("quota_window_s must be within (0, 3600]")
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def draw(self, *, claude: bool, followup: bool, images: tuple[Any, ...] = ()) -> str | None:
        """Pick the fault for one request (or None).

        Args:
            claude: whether answer faults may apply.
            followup: whether the request is a corrective follow-up turn.
            images: the request's image facts, for ``by_image``.

        Returns:
            The ``FaultPlan`` field name of the fault, or ``None``.
        """
        if self.by_image is not None:
            for facts in images:
                fault = self.by_image(facts)
                if fault is not None and fault not in _FAULT_NAMES:
                    raise ValueError(f"by_image returned {fault!r}, not a FaultPlan rate field")
                if fault is not None:
                    # An answer fault has no meaning for an embedding model: it answers normally.
                    return None if not claude and fault in ANSWER_OUTCOMES else fault
        with self._lock:
            u = self._rng.random()
        edge = 0.0
        for name, *_ in _TRANSPORT_FAULTS:
            edge += getattr(self, name)
            if u < edge:
                return name
        if claude and (self.faults_on_followups or not followup):
            for name, _ in _ANSWER_FAULTS:
                edge += getattr(self, name)
                if u < edge:
                    return name
        return None

    def raise_transport(self, fault: str | None) -> None:
        """Raise the error answer of a transport fault (a stall is not an error: it waits).

        Raises:
            ServiceError: the fault's status and code, when ``fault`` is a transport error.
        """
        for name, outcome, status, code, message in _TRANSPORT_FAULTS:
            if fault == name and status:
                raise ServiceError(status, code, message, outcome)

    def choice(self, options: list[Any]) -> Any:
        """A seeded, thread-safe choice among ``options``."""
        with self._lock:
            return self._rng.choice(options)

    def latency_for(self, family: str) -> float:
        """Seconds of added latency for a model family (with jitter)."""
        base = float(self.latency.get(family, self.latency.get("*", 0.0)))
        if base <= 0:
            return 0.0
        if self.latency_jitter:
            with self._lock:
                base *= 1 + self.latency_jitter * (2 * self._rng.random() - 1)
        return max(0.0, base)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    model_id: str
    outcome: str
    status: int
    media_types: tuple[str, ...] = ()
    image_sha256: tuple[str, ...] = ()
    turns: int = 0  # messages in a Claude request
    max_tokens: int | None = None
    dims: int | None = None  # Titan outputEmbeddingLength, Nova embeddingDimension
    has_text: bool = False
    purpose: str | None = None  # Nova embeddingPurpose
    detail: str = ""
    at: float = 0.0  # seconds since the server was created, when the request arrived
    credential: str = ""  # "<access key id>/<region>" from the SigV4 Authorization header


class Counters:
    """What the server received, thread-safe. Read after the calls, or use ``snapshot()``."""

    #: Outcomes that return an answer, which the real service bills.
    BILLED = frozenset({"ok", "malformed", "truncated", "refusal", "hostile", "stalled"})

    def __init__(self, log_size: int = 10_000):
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # per model id
        self.outcomes: Counter[str] = Counter()  # per outcome
        self.model_outcomes: Counter[tuple[str, str]] = Counter()
        self.images: Counter[str] = Counter()  # requests carrying each image (sha256 of its bytes), any model
        self.model_images: Counter[tuple[str, str]] = Counter()  # requests per (model id, image sha256)
        self.billed_images: Counter[tuple[str, str]] = Counter()  # answered (billed) requests per (model, image)
        self.media_types: Counter[str] = Counter()
        self.credentials: Counter[str] = Counter()  # requests per "<access key id>/<region>"
        self.details: Counter[str] = Counter()  # e.g. malformed variants
        self.input_tokens = 0
        self.output_tokens = 0
        self.log: deque[RequestRecord] = deque(maxlen=log_size)

    def record(self, rec: RequestRecord, *, input_tokens: int = 0, output_tokens: int = 0) -> None:
        with self._lock:
            self.requests[rec.model_id] += 1
            self.outcomes[rec.outcome] += 1
            self.model_outcomes[(rec.model_id, rec.outcome)] += 1
            for digest in set(rec.image_sha256):
                self.images[digest] += 1
                self.model_images[(rec.model_id, digest)] += 1
                if rec.outcome in self.BILLED:
                    self.billed_images[(rec.model_id, digest)] += 1
            if rec.credential:
                self.credentials[rec.credential] += 1
            for media_type in rec.media_types:
                self.media_types[media_type] += 1
            if rec.detail:
                self.details[rec.detail] += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.log.append(rec)

    @property
    def total(self) -> int:
        """All requests received."""
        with self._lock:
            return sum(self.requests.values())

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (JSON-friendly)."""
        with self._lock:
            return {
                "total": sum(self.requests.values()),
                "requests": dict(self.requests),
                "outcomes": dict(self.outcomes),
                "model_outcomes": {f"{m}|{o}": n for (m, o), n in self.model_outcomes.items()},
                "images": dict(self.images),
                "model_images": {f"{m}|{d}": n for (m, d), n in self.model_images.items()},
                "billed_images": {f"{m}|{d}": n for (m, d), n in self.billed_images.items()},
                "media_types": dict(self.media_types),
                "details": dict(self.details),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
            }

    def log_rows(self) -> list[list[Any]]:
        """The log as ``[model_id, outcome, at]`` rows, oldest first."""
        with self._lock:
            return [[r.model_id, r.outcome, r.at] for r in self.log]

    def reset(self) -> None:
        with self._lock:
            for counter in (
                self.requests,
                self.outcomes,
                self.model_outcomes,
                self.images,
                self.model_images,
                self.billed_images,
                self.media_types,
                self.credentials,
                self.details,
            ):
                counter.clear()
            self.input_tokens = self.output_tokens = 0
            self.log.clear()


class Quota:
    """The plan's requests-per-minute quota, per model id, over a sliding window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}

    def admit(self, plan: FaultPlan, model_id: str) -> None:
        """Count one request against ``plan.rpm_quota`` (nothing to do without a quota).

        Raises:
            ServiceError: 429 ``ThrottlingException`` (outcome ``quota``) beyond the quota.
        """
        quota = plan.rpm_quota
        if not quota:
            return
        now = time.monotonic()
        span = plan.quota_window_s
        allowed = max(1, math.floor(quota * span / 60.0))
        with self._lock:
            window = self._windows.setdefault(model_id, deque())
            while window and now - window[0] >= span:
                window.popleft()
            if len(window) >= allowed:
                raise ServiceError(429, "ThrottlingException", "Too many requests, please wait before trying again.", "quota")
            window.append(now)

    def clear(self) -> None:
        """Forget every window (between benchmark runs)."""
        with self._lock:
            self._windows.clear()
