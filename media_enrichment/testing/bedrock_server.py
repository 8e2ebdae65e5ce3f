"""A Bedrock-runtime-compatible HTTP server on loopback, for tests and benchmarks.

It speaks the ``InvokeModel`` operation (``POST /model/{modelId}/invoke``) for Claude (Anthropic
Messages body) and Titan Multimodal Embeddings G1, validates requests the way the service does
(API version, media type against the bytes, size limits, embedding lengths), answers
deterministically from the image bytes, and sends errors the way Bedrock does so botocore
parses them (JSON ``{"message": ...}`` plus an ``x-amzn-ErrorType`` header, whose part before
``:`` becomes the error code). Point the real boto3 client at it with
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=server.endpoint_url`` (see ``BedrockServer.env``).

It is as strict as the service about which models answer: retired Claude versions
(``RETIRED_MODELS``) get 404 ``ResourceNotFoundException`` "This model version has reached the
end of its life", Claude 4.x base ids get 400 ``ValidationException`` (on-demand throughput
isn't supported: use an inference profile), profile ids (``us.``, ``global.`` …, or profile ARNs)
are served, and Claude Opus 4.1 and 4.5+ refuse ``temperature`` with ``top_p``. The control
plane's ``GetFoundationModel`` (``GET /foundation-models/{id}``, for the ``bedrock`` client with
``AWS_ENDPOINT_URL_BEDROCK``) reports each model's lifecycle: ``mark_legacy`` makes one
``LEGACY`` with an end-of-life date, ``control_plane_denied`` refuses the call.

Faults (throttling, 5xx, model timeouts, stalls longer than a read timeout, malformed,
truncated or refused answers, a requests-per-minute quota) are injected from a seeded
``FaultPlan``. ``Counters`` record every request per model, outcome and image hash.

    with BedrockServer(faults=FaultPlan(throttle_rate=0.2, seed=1)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        ...
        assert max(server.counters.images.values()) <= 3          # requests per image
        assert max(server.counters.billed_images.values()) == 1   # answers per (model, image)

The server binds loopback only, stops itself after ``max_lifetime`` seconds, bounds request
bodies, and its sleeps (latency, stalls) end as soon as it stops. Run it standalone with
``python -m media_enrichment.testing.bedrock_server --port 8777`` (``--help`` lists latency,
fault and quota flags); a process driving it from outside reads its counters from
``GET /_test/counters`` and clears them with ``POST /_test/reset``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import datetime
import hashlib
import io
import ipaddress
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["KNOWN_MODELS", "RETIRED_MODELS", "BedrockServer", "Counters", "FaultPlan", "RequestRecord", "ServiceError"]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

KNOWN_MODELS = frozenset(
    {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-opus-20240229-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-opus-4-20250514-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-sonnet-4-6",
        "anthropic.claude-opus-4-6-v1",
        "amazon.titan-embed-image-v1",
        "amazon.nova-2-multimodal-embeddings-v1:0",  # served by testing/nova_handler.py
    }
)
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca", "in")

#: Claude versions that have reached end of life on Bedrock: every call answers 404
#: ResourceNotFoundException (Claude 3 Haiku on 2026-09-10 in most regions, 3.5 Haiku on
#: 2026-06-19, 3.7 Sonnet on 2026-04-28; Claude 3 Sonnet and both 3.5 Sonnets before).
RETIRED_MODELS = frozenset(
    {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
    }
)
END_OF_LIFE_MESSAGE = (
    "This model version has reached the end of its life. Please refer to the AWS documentation for more details."
)
#: The service's wording, typographic apostrophe included.
PROFILE_REQUIRED_MESSAGE = (
    "Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your request with "
    "the ID or ARN of an inference profile that contains this model."
)
SAMPLING_MESSAGE = "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
#: Claude 4.x ids name the family first (``claude-haiku-4-5``); they are served on demand only
#: through an inference profile.
_CLAUDE_4 = re.compile(r"^anthropic\.claude-(?:haiku|sonnet|opus)-(?P<major>\d+)(?:-(?P<minor>\d)(?!\d))?")

CLAUDE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TITAN_MEDIA_TYPES = ("image/jpeg", "image/png")
TITAN_DIMS = (256, 384, 1024)
CLAUDE_MAX_BASE64 = 5 * 1024 * 1024
CLAUDE_MAX_SIDE = 8000
CLAUDE_MAX_IMAGES = 20
CLAUDE_SCALE_EDGE = 1568
CLAUDE_SCALE_PIXELS = 1_150_000
TITAN_MAX_SIDE = 2048
TITAN_MAX_BASE64 = 25 * 1024 * 1024
MAX_STALL_SECONDS = 60.0
MAX_LATENCY_SECONDS = 30.0

#: Test-only control routes (not Bedrock's): counters as JSON, and a reset of counters and quota.
COUNTERS_PATH = "/_test/counters"
RESET_PATH = "/_test/reset"

_MODEL_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>[A-Za-z-]+)$")
_FOUNDATION_MODEL_PATH = re.compile(r"^/foundation-models/(?P<model>[^/]+)$")
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/\d{8}/(?P<region>[^/,\s]+)/")

# ---------------------------------------------------------------------------------------------
# Faults and counters
# ---------------------------------------------------------------------------------------------

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
)


@dataclass
class FaultPlan:
    """Which faults the server injects, how often, and how slow it is. Thread-safe.

    Rates are probabilities per request and are mutually exclusive (one draw per request picks
    at most one fault), so they must sum to at most 1. Transport faults apply to every model;
    answer faults (malformed, truncated, refusal) only to Claude.
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
    #: Whether answer faults also hit corrective follow-up turns (requests with >1 message).
    faults_on_followups: bool = True
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

    def draw(self, *, claude: bool, followup: bool) -> str | None:
        """Pick the fault for one request (or None).

        Args:
            claude: whether answer faults may apply.
            followup: whether the request is a corrective follow-up turn.

        Returns:
            The ``FaultPlan`` field name of the fault, or ``None``.
        """
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
    BILLED = frozenset({"ok", "malformed", "truncated", "refusal", "stalled"})

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


class ServiceError(Exception):
    """An error answer, sent the way Bedrock sends it."""

    def __init__(self, status: int, code: str, message: str, outcome: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome

    def with_outcome(self, outcome: str) -> ServiceError:
        """The same error, counted under another outcome."""
        self.outcome = outcome
        return self


def _validation(message: str) -> ServiceError:
    return ServiceError(400, "ValidationException", message, "validation")


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """Media type from magic bytes (independent of the library's own sniffing)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_PALETTE = {
    "red": (200, 30, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 50),
    "green": (50, 160, 60),
    "teal": (30, 150, 150),
    "blue": (40, 80, 200),
    "purple": (130, 50, 170),
    "pink": (240, 130, 180),
    "brown": (120, 75, 40),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "white": (245, 245, 245),
}
_PALETTE_NAMES = list(_PALETTE)
_PALETTE_RGB = np.array(list(_PALETTE.values()), dtype=np.float32)
_SUBJECTS = ["still life", "landscape", "street scene", "product shot", "interior", "pattern", "close-up", "poster"]
_MOODS = ["bright", "calm", "bold", "soft", "vivid", "muted", "warm", "cool"]


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    media_type: str
    width: int
    height: int
    colour: str


class _FactsCache:
    """Bounded cache of decoded image facts, keyed by the bytes' hash."""

    def __init__(self, size: int = 2048):
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[str, ImageFacts] = collections.OrderedDict()
        self._size = size

    def get(self, digest: str) -> ImageFacts | None:
        with self._lock:
            facts = self._items.get(digest)
            if facts is not None:
                self._items.move_to_end(digest)
            return facts

    def put(self, facts: ImageFacts) -> None:
        with self._lock:
            self._items[facts.sha256] = facts
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any decoder failure is the service's "could not process"
        raise _validation("Could not process image") from None


def _dominant_colour(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (64, 64))
            small = img.convert("RGB").resize((24, 24))
    except Exception:  # noqa: BLE001
        raise _validation("Could not process image") from None
    pixels = np.asarray(small, dtype=np.float32).reshape(-1, 3)
    distances = ((pixels[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2)
    votes = np.bincount(distances.argmin(axis=1), minlength=len(_PALETTE_NAMES))
    return _PALETTE_NAMES[int(votes.argmax())]


def _claude_image_tokens(width: int, height: int) -> int:
    scale = min(1.0, CLAUDE_SCALE_EDGE / max(width, height), math.sqrt(CLAUDE_SCALE_PIXELS / (width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / 750))


def _text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


# ---------------------------------------------------------------------------------------------
# Deterministic answers
# ---------------------------------------------------------------------------------------------


def _seeded_unit(seed_text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def image_vector(facts: ImageFacts, dim: int) -> np.ndarray:
    """Unit vector for an image: its colour's direction plus a component seeded by its hash."""
    return _unit(0.8 * _seeded_unit(f"colour:{facts.colour}", dim) + 0.6 * _seeded_unit(f"image:{facts.sha256}", dim))


def text_vector(text: str, dim: int) -> np.ndarray:
    """Unit vector for a text: colour words it names, plus a component seeded by the text."""
    words = re.findall(r"[a-z]+", text.lower())
    colours = [w for w in words if w in _PALETTE] + ["grey" for w in words if w == "gray"]
    own = _seeded_unit("text:" + " ".join(words), dim)
    if not colours:
        return own
    colour = _unit(sum(_seeded_unit(f"colour:{c}", dim) for c in colours))
    return _unit(0.8 * colour + 0.6 * own)


def metadata_for(facts: ImageFacts) -> dict[str, Any]:
    """Plausible, deterministic metadata for an image."""
    h = bytes.fromhex(facts.sha256)
    subject = _SUBJECTS[h[0] % len(_SUBJECTS)]
    mood = _MOODS[h[1] % len(_MOODS)]
    orientation = "landscape" if facts.width > facts.height else "portrait" if facts.height > facts.width else "square"
    title = f"{mood.capitalize()} {facts.colour} {subject}"
    description = (
        f"A {mood} {orientation}-format {subject} dominated by {facts.colour} tones. "
        f"The image is {facts.width} by {facts.height} pixels."
    )
    return {
        "title": title,
        "description": description,
        "keywords": [facts.colour, subject, f"{facts.colour} {subject}", mood, orientation],
        "tags": [subject.split()[0], facts.colour, orientation],
        "ocr_texts": [f"REF {facts.sha256[:6].upper()}"] if h[2] % 4 == 0 else [],
    }


def _truncate_fields(metadata: dict[str, Any], budget_chars: int) -> dict[str, Any]:
    """The fields whose serialisation fits in ``budget_chars`` (a cut tool input)."""
    out: dict[str, Any] = {}
    used = 2
    for key, value in metadata.items():
        piece = len(json.dumps({key: value})) - 1
        if used + piece > budget_chars:
            if isinstance(value, str) and not out:
                out[key] = value[: max(0, budget_chars - used - len(key) - 6)]
            break
        out[key] = value
        used += piece
    return out


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


def _family(model_id: str) -> str | None:
    if "anthropic." in model_id:
        return "anthropic"
    if "titan-embed-image" in model_id:
        return "titan"
    if "nova" in model_id and "multimodal-embeddings" in model_id:
        return "nova"
    return None


def _base_model(model_id: str) -> str:
    """Strip an ARN and a cross-region inference profile prefix."""
    base = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    head, _, rest = base.partition(".")
    if rest and head in PROFILE_PREFIXES:
        base = rest
    return base


def _is_profile(model_id: str) -> bool:
    """Whether an id names an inference profile (a geography prefix, or a profile ARN)."""
    if model_id.startswith("arn:"):
        return ":inference-profile/" in model_id or ":application-inference-profile/" in model_id
    head, _, rest = model_id.partition(".")
    return bool(rest) and head in PROFILE_PREFIXES


def _claude_version(base: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Claude 4+ base id (``claude-haiku-4-5`` -> (4, 5)), else None."""
    match = _CLAUDE_4.match(base)
    if not match:
        return None
    return int(match.group("major")), int(match.group("minor") or 0)


def _refuses_temperature_with_top_p(base: str) -> bool:
    """Claude Opus 4.1 and every 4.5+ model refuse ``temperature`` and ``top_p`` together."""
    version = _claude_version(base)
    return version is not None and (version >= (4, 5) or base.startswith("anthropic.claude-opus-4-1"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BedrockTestServer/1.0"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms), which would add to every request's latency.
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections are closed after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    @property
    def app(self) -> BedrockServer:
        return self.server.app  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, {"status": "ok"})
            return
        if url.path == COUNTERS_PATH:  # for a benchmark driving a server in another process
            self._send(200, self.app.counters_payload(with_log="log=1" in url.query))
            return
        match = _FOUNDATION_MODEL_PATH.match(url.path)
        if match:  # the control plane's GetFoundationModel
            try:
                self._send(200, self.app.get_foundation_model(unquote(match.group("model"))))
            except ServiceError as error:
                self._send_error(error)
            return
        self._send_error(ServiceError(404, "UnknownOperationException", "Unknown operation", "unknown_operation"))

    def do_POST(self) -> None:  # noqa: N802
        if self.app._stopping.is_set():  # stopped: drop kept-alive connections without answering
            self.close_connection = True
            return
        if urlsplit(self.path).path == RESET_PATH:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            self.app.reset()
            self._send(200, {"reset": True})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.app.max_body_bytes:
            self.close_connection = True
            self._send_error(_validation(f"Request body of {length} bytes exceeds the server's limit"))
            return
        body = self.rfile.read(length) if length else b""
        match = _MODEL_PATH.match(urlsplit(self.path).path)
        if not match:
            self._send_error(ServiceError(404, "UnknownOperationException", "Unknown operation", "unknown_operation"))
            return
        model_id = unquote(match.group("model"))
        operation = match.group("op")
        scope = _CREDENTIAL.search(self.headers.get("Authorization") or "")
        credential = f"{scope.group('key')}/{scope.group('region')}" if scope else ""
        status, payload, headers = self.app.handle_invoke(model_id, operation, body, credential=credential)
        if status >= 400:
            self._send_error(payload)
        else:
            self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_error(self, error: ServiceError) -> None:
        data = json.dumps({"message": error.message}).encode("utf-8")
        try:
            self.send_response(error.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("x-amzn-ErrorType", error.code + ERROR_TYPE_SUFFIX)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("request from %s failed", client_address, exc_info=True)


class BedrockServer:
    """A Bedrock-runtime-compatible server on loopback; a context manager.

    Attributes:
        faults: the ``FaultPlan`` in force (may be replaced between calls).
        counters: ``Counters`` of everything received.
        denied_models: model ids answered with 403 AccessDeniedException.
        retired_models: base model ids answered with the end-of-life error.
        legacy_models: base model id -> its lifecycle fields for ``GetFoundationModel`` (see
            ``mark_legacy``); every other known model is ``ACTIVE``.
        control_plane_denied: ``GetFoundationModel`` answers 403 AccessDeniedException.
        foundation_model_requests: ``GetFoundationModel`` calls per model identifier (not in
            ``counters``, which count InvokeModel).
    """

    def __init__(
        self,
        *,
        faults: FaultPlan | None = None,
        denied_models: Iterable[str] = (),
        models: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        max_lifetime: float = 900.0,
        max_body_bytes: int = 40 * 1024 * 1024,
        region: str = "us-east-1",
        log_size: int = 10_000,
        retired_models: Iterable[str] = RETIRED_MODELS,
        legacy_models: Mapping[str, str] | None = None,
        control_plane_denied: bool = False,
    ):
        """Create (not start) a server.

        Args:
            faults: injected faults and latency (default: none).
            denied_models: model ids (or their base ids) that get 403 AccessDeniedException.
            models: model ids known besides ``KNOWN_MODELS`` (others get 404).
            host: a loopback address; anything else is refused.
            port: 0 picks a free port.
            max_lifetime: seconds after which the server stops itself.
            max_body_bytes: larger requests are rejected.
            region: the region named in messages.
            log_size: requests kept in ``counters.log`` (the most recent).
            retired_models: base ids that have reached end of life (default ``RETIRED_MODELS``).
            legacy_models: base id -> end-of-life date (``YYYY-MM-DD``) of models that
                ``GetFoundationModel`` reports as ``LEGACY``.
            control_plane_denied: refuse ``GetFoundationModel`` with 403 AccessDeniedException
                (a caller without ``bedrock:GetFoundationModel``).
        """
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"BedrockServer binds loopback only, not {host!r}")
        self.faults = faults or FaultPlan()
        self.denied_models = frozenset(denied_models)
        self.models = KNOWN_MODELS | frozenset(models)
        self.retired_models = frozenset(retired_models)
        self.legacy_models: dict[str, dict[str, str]] = {}
        for model_id, end_of_life in (legacy_models or {}).items():
            self.mark_legacy(model_id, end_of_life)
        self.control_plane_denied = control_plane_denied
        self.foundation_model_requests: Counter[str] = Counter()
        self.host = host
        self.port = port
        self.max_lifetime = max_lifetime
        self.max_body_bytes = max_body_bytes
        self.region = region
        self.counters = Counters(log_size=log_size)
        self.epoch = time.monotonic()
        self._facts = _FactsCache()
        self._stopping = threading.Event()
        self._quota_lock = threading.Lock()
        self._quota: dict[str, deque[float]] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> BedrockServer:
        """Bind and serve in a background thread.

        Returns:
            The server itself.
        """
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.app = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.name = f"bedrock-test-server-{self.port}"
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        logger.debug("Bedrock test server on %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); pending sleeps end at once."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> BedrockServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing boto3 at this server with fake credentials."""
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.endpoint_url,  # the control plane (GetFoundationModel)
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
        }

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def reset(self) -> None:
        """Clear the counters and the quota windows (between benchmark runs)."""
        self.counters.reset()
        with self._quota_lock:
            self._quota.clear()

    def counters_payload(self, *, with_log: bool = False) -> dict[str, Any]:
        """The counters' snapshot, and optionally the log as ``[model_id, outcome, at]`` rows."""
        payload = self.counters.snapshot()
        payload["now"] = round(time.monotonic() - self.epoch, 6)
        if with_log:
            with self.counters._lock:
                payload["log"] = [[r.model_id, r.outcome, r.at] for r in self.counters.log]
        return payload

    # -- control plane ---------------------------------------------------------------------

    def mark_legacy(
        self, model_id: str, end_of_life: str, *, legacy_since: str | None = None, extended_access_from: str | None = None
    ) -> None:
        """Make ``GetFoundationModel`` report a model as ``LEGACY`` (InvokeModel still answers).

        Args:
            model_id: a base model id (a profile's prefix is dropped).
            end_of_life: the end-of-life date, ``YYYY-MM-DD``.
            legacy_since: when it became legacy (default: 180 days before the end of life).
            extended_access_from: start of public extended access (higher prices), if any.
        """
        eol = datetime.date.fromisoformat(end_of_life)
        since = datetime.date.fromisoformat(legacy_since) if legacy_since else eol - datetime.timedelta(days=180)
        fields = {"legacyTime": f"{since.isoformat()}T00:00:00Z", "endOfLifeTime": f"{eol.isoformat()}T00:00:00Z"}
        if extended_access_from:
            extended = datetime.date.fromisoformat(extended_access_from)
            fields["publicExtendedAccessTime"] = f"{extended.isoformat()}T00:00:00Z"
        self.legacy_models[_base_model(model_id)] = fields

    def get_foundation_model(self, model_identifier: str) -> dict[str, Any]:
        """``GetFoundationModel``: the model's details and lifecycle, the way Bedrock answers.

        Raises:
            ServiceError: 403 when ``control_plane_denied``; 404 for an unknown or retired model
                and for an inference profile id (not a foundation model).
        """
        self.foundation_model_requests[model_identifier] += 1
        if self.control_plane_denied:
            raise ServiceError(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: bedrock:GetFoundationModel",
                "access_denied",
            )
        model_id = model_identifier.rsplit("/", 1)[-1] if model_identifier.startswith("arn:") else model_identifier
        family = _family(model_id)
        if model_id not in self.models or family is None or model_id in self.retired_models:
            raise ServiceError(
                404, "ResourceNotFoundException", f"The model {model_identifier} was not found.", "not_found"
            )
        claude = family == "anthropic"
        lifecycle: dict[str, str] = {"status": "ACTIVE"}
        if model_id in self.legacy_models:
            lifecycle = {"status": "LEGACY", **self.legacy_models[model_id]}
        return {
            "modelDetails": {
                "modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelName": model_id.split(".", 1)[-1],
                "providerName": "Anthropic" if claude else "Amazon",
                "inputModalities": ["TEXT", "IMAGE"],
                "outputModalities": ["TEXT"] if claude else ["EMBEDDING"],
                "responseStreamingSupported": claude,
                "customizationsSupported": [],
                "inferenceTypesSupported": (
                    ["INFERENCE_PROFILE"] if claude and _claude_version(model_id) is not None else ["ON_DEMAND"]
                ),
                "modelLifecycle": lifecycle,
            }
        }

    # -- request handling ------------------------------------------------------------------

    def handle_invoke(
        self, model_id: str, operation: str, raw_body: bytes, *, credential: str = ""
    ) -> tuple[int, Any, dict[str, str]]:
        """Handle one request. Returns ``(status, payload or ServiceError, headers)``."""
        started = time.monotonic()
        rec: dict[str, Any] = {"model_id": model_id, "at": round(started - self.epoch, 6), "credential": credential}
        try:
            status, payload, headers, usage = self._invoke(model_id, operation, raw_body, rec)
        except ServiceError as error:
            rec.pop("outcome", None)
            self.counters.record(RequestRecord(outcome=error.outcome, status=error.status, **rec))
            return error.status, error, {}
        outcome = rec.pop("outcome", "ok")
        self.counters.record(
            RequestRecord(outcome=outcome, status=status, **rec), input_tokens=usage[0], output_tokens=usage[1]
        )
        headers = {**headers, "X-Amzn-Bedrock-Invocation-Latency": str(int((time.monotonic() - started) * 1000))}
        return status, payload, headers

    def _invoke(
        self, model_id: str, operation: str, raw_body: bytes, rec: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str], tuple[int, int]]:
        if operation != "invoke":
            raise ServiceError(
                404, "UnknownOperationException", f"Operation {operation!r} is not served by this test server", "unknown_operation"
            )
        base = _base_model(model_id)
        family = _family(base)
        if model_id in self.denied_models or base in self.denied_models:
            raise ServiceError(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
                "access_denied",
            )
        if base in self.retired_models:
            raise ServiceError(404, "ResourceNotFoundException", END_OF_LIFE_MESSAGE, "end_of_life")
        if base not in self.models or family is None:
            raise ServiceError(404, "ResourceNotFoundException", "Model not found.", "not_found")
        if family == "anthropic" and _claude_version(base) is not None and not _is_profile(model_id):
            raise _validation(PROFILE_REQUIRED_MESSAGE.format(model_id=model_id)).with_outcome("profile_required")
        self._check_quota(model_id)
        try:
            body = json.loads(raw_body or b"null")
        except ValueError:
            raise _validation("Malformed input request, please reformat your input and try again.") from None
        if not isinstance(body, dict):
            raise _validation("Malformed input request: #: expected type: JSONObject, please reformat your input and try again.")
        if family == "anthropic":
            return self._claude(model_id, body, rec)
        if family == "nova":
            from media_enrichment.testing.nova_handler import handle_nova

            return handle_nova(self, model_id, body, rec)
        return self._titan(model_id, body, rec)

    def _check_quota(self, model_id: str) -> None:
        quota = self.faults.rpm_quota
        if not quota:
            return
        now = time.monotonic()
        span = self.faults.quota_window_s
        allowed = max(1, math.floor(quota * span / 60.0))
        with self._quota_lock:
            window = self._quota.setdefault(model_id, deque())
            while window and now - window[0] >= span:
                window.popleft()
            if len(window) >= allowed:
                raise ServiceError(429, "ThrottlingException", "Too many requests, please wait before trying again.", "quota")
            window.append(now)

    def _transport_fault(self, fault: str | None) -> None:
        for name, outcome, status, code, message in _TRANSPORT_FAULTS:
            if fault == name and status:
                raise ServiceError(status, code, message, outcome)

    def _facts_for(self, data: bytes, media_type: str, *, size: tuple[int, int] | None = None) -> ImageFacts:
        digest = hashlib.sha256(data).hexdigest()
        facts = self._facts.get(digest)
        if facts is None:
            width, height = size or _image_size(data)
            facts = ImageFacts(digest, media_type, width, height, _dominant_colour(data))
            self._facts.put(facts)
        return facts

    def _decode_b64(self, value: Any, where: str) -> bytes:
        if not isinstance(value, str) or not value:
            raise _validation(f"{where}: Field required")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _validation(f"{where}: Invalid base64 data") from None

    # -- Claude ----------------------------------------------------------------------------

    def _claude(self, model_id: str, body: dict[str, Any], rec: dict[str, Any]):
        version = body.get("anthropic_version")
        if version is None:
            raise _validation("Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.")
        if version != ANTHROPIC_VERSION:
            raise _validation(f"Invalid API version: {version!r}; expected {ANTHROPIC_VERSION!r}")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _validation("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _validation("max_tokens: Input should be a positive integer")
        if "temperature" in body and "top_p" in body and _refuses_temperature_with_top_p(_base_model(model_id)):
            raise _validation(SAMPLING_MESSAGE)
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _validation("tools: Input should be a valid list")
        tool_names = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _validation(f"tools.{i}.name: Field required")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise _validation(f"tools.{i}.input_schema: Input schema must be an object with type 'object'")
            tool_names.append(tool["name"])
        tool_choice = body.get("tool_choice")
        forced: str | None = None
        if tool_choice is not None:
            if not isinstance(tool_choice, dict) or tool_choice.get("type") not in ("auto", "any", "tool", "none"):
                raise _validation("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
            if tool_choice.get("type") in ("auto", "any", "tool") and not tools:
                raise _validation("tool_choice may only be specified while providing tools.")
            if tool_choice.get("type") == "tool":
                forced = tool_choice.get("name")
                if forced not in tool_names:
                    raise _validation(f"Tool '{forced}' not found in provided tools")
            elif tool_choice.get("type") == "any":
                forced = tool_names[0]

        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _validation("messages: at least one message is required")
        images: list[tuple[bytes, str, tuple[int, int]]] = []
        text_chars = len(json.dumps(tools)) if tools else 0
        if isinstance(body.get("system"), str):
            text_chars += len(body["system"])
        previous_role = None
        pending_tool_ids: set[str] = set()
        for m, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise _validation(f"messages.{m}.role: Input should be 'user' or 'assistant'")
            role = message["role"]
            if m == 0 and role != "user":
                raise _validation('messages: first message must use the "user" role')
            if role == previous_role:
                raise _validation(f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row')
            previous_role = role
            content = message.get("content")
            if isinstance(content, str):
                if not content:
                    raise _validation(f"messages.{m}: user messages must have non-empty content")
                content = [{"type": "text", "text": content}]
            if not isinstance(content, list) or not content:
                raise _validation(f"messages.{m}: all messages must have non-empty content except for the optional final assistant message")
            result_ids = set()
            for c, block in enumerate(content):
                where = f"messages.{m}.content.{c}"
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "text":
                    if not isinstance(block.get("text"), str) or not block["text"]:
                        raise _validation("messages: text content blocks must be non-empty")
                    text_chars += len(block["text"])
                elif kind == "image":
                    if role != "user":
                        raise _validation(f"{where}: images are only allowed in user messages")
                    images.append(self._claude_image(block, f"{where}.image"))
                elif kind == "tool_use":
                    if role != "assistant":
                        raise _validation(f"{where}: tool_use blocks are only allowed in assistant messages")
                    pending_tool_ids.add(str(block.get("id")))
                    text_chars += len(json.dumps(block.get("input")))
                elif kind == "tool_result":
                    result_ids.add(str(block.get("tool_use_id")))
                    text_chars += len(json.dumps(block.get("content")))
                else:
                    raise _validation(f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
            if role == "user" and pending_tool_ids:
                if not pending_tool_ids <= result_ids:
                    raise _validation(
                        f"messages.{m}: tool_use ids were found without tool_result blocks immediately after: "
                        + ", ".join(sorted(pending_tool_ids - result_ids))
                    )
                pending_tool_ids = set()
        if len(images) > CLAUDE_MAX_IMAGES:
            raise _validation(f"messages: too many images, at most {CLAUDE_MAX_IMAGES} are allowed")

        facts = [self._facts_for(data, media_type, size=size) for data, media_type, size in images]
        rec.update(
            media_types=tuple(f.media_type for f in facts),
            image_sha256=tuple(f.sha256 for f in facts),
            turns=len(messages),
            max_tokens=max_tokens,
        )
        fault = self.faults.draw(claude=True, followup=len(messages) > 1)
        self._fault_prelude(fault, "anthropic")

        input_tokens = max(1, math.ceil(text_chars / 4)) + sum(_claude_image_tokens(f.width, f.height) for f in facts)
        metadata = metadata_for(facts[0]) if facts else {
            "title": "Text only request",
            "description": "No image was provided.",
            "keywords": [],
            "tags": [],
            "ocr_texts": [],
        }
        content, stop_reason, detail = self._claude_content(metadata, forced or (tool_names[0] if tool_names else None), fault, max_tokens, model_id)
        output_tokens = _text_tokens(json.dumps(content))
        outcome = {"malformed_rate": "malformed", "truncated_rate": "truncated", "refusal_rate": "refusal"}.get(fault or "", "ok")
        if outcome == "ok" and stop_reason == "max_tokens":
            detail = "natural_truncation"
        rec.update(outcome=outcome, detail=detail)
        if stop_reason == "max_tokens":
            output_tokens = max_tokens
        answer = {
            "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": _base_model(model_id).split(".", 1)[-1],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(output_tokens),
        }
        return self._finish(fault, answer, headers, (input_tokens, output_tokens), rec)

    def _fault_prelude(self, fault: str | None, family: str) -> None:
        self._transport_fault(fault)
        self._sleep(self.faults.latency_for(family))

    def _finish(
        self, fault: str | None, answer: Any, headers: dict[str, str], usage: tuple[int, int], rec: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str], tuple[int, int]]:
        if fault == "stall_rate":
            # Answer only after the stall: a client with a shorter read timeout has given up by
            # then (the write fails quietly); a patient one gets a slow answer.
            rec["outcome"] = "stalled"
            self._sleep(self.faults.stall_seconds)
        return 200, answer, headers, usage

    def _claude_image(self, block: dict[str, Any], where: str) -> tuple[bytes, str, tuple[int, int]]:
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") != "base64":
            raise _validation(f"{where}.source: Input tag found using 'type' does not match any of the expected tags: 'base64'")
        media_type = source.get("media_type")
        if media_type not in CLAUDE_MEDIA_TYPES:
            raise _validation(f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
        encoded = source.get("data")
        if isinstance(encoded, str) and len(encoded) > CLAUDE_MAX_BASE64:
            raise _validation(f"{where}.source.base64: image exceeds 5 MB maximum: {len(encoded)} bytes > {CLAUDE_MAX_BASE64} bytes")
        data = self._decode_b64(encoded, f"{where}.source.base64.data")
        actual = sniff(data)
        if actual is None:
            raise _validation("Could not process image")
        if actual != media_type:
            raise _validation(
                f"The image was specified using the {media_type} media type, but the image appears to be a {actual} image"
            )
        width, height = _image_size(data)
        if width > CLAUDE_MAX_SIDE or height > CLAUDE_MAX_SIDE:
            raise _validation(f"{where}.source.base64.data: At least one of the image dimensions exceed max allowed size: {CLAUDE_MAX_SIDE} pixels")
        return data, media_type, (width, height)

    def _claude_content(
        self, metadata: dict[str, Any], tool: str | None, fault: str | None, max_tokens: int, model_id: str
    ) -> tuple[list[dict[str, Any]], str, str]:
        budget = max_tokens * 4  # characters the model may write
        tool_id = f"toolu_bdrk_{uuid.uuid4().hex[:24]}"
        if fault == "refusal_rate":
            stop = self.faults.choice(["end_turn", "refusal"])
            return [{"type": "text", "text": "I'm sorry, but I can't help with describing this image."}], stop, f"refusal:{stop}"
        if fault == "malformed_rate":
            variant = self.faults.choice(["prose", "fence", "trailing_comma", "broken"])
            compact = json.dumps(metadata)
            if variant == "prose":
                text = f"Here is the metadata for the image:\n{compact}\nLet me know if you need anything else."
            elif variant == "fence":
                text = "```json\n" + json.dumps(metadata, indent=2) + "\n```"
            elif variant == "trailing_comma":
                text = compact[:-1] + ",}"
            else:
                text = compact.replace('", "', '" "', 1)[:-1]
            return [{"type": "text", "text": text}], "end_turn", f"malformed:{variant}"
        if fault == "truncated_rate":
            budget = min(budget, max(8, len(json.dumps(metadata)) // 2))
        if tool is None:
            text = json.dumps(metadata)
            if len(text) > budget:
                return [{"type": "text", "text": text[:budget]}], "max_tokens", "truncated:text"
            return [{"type": "text", "text": text}], "end_turn", ""
        if len(json.dumps(metadata)) > budget:
            if fault == "truncated_rate" and self.faults.choice([True, False]):
                text = json.dumps(metadata)[:budget]
                return [{"type": "text", "text": text}], "max_tokens", "truncated:text"
            partial = _truncate_fields(metadata, budget)
            return [{"type": "tool_use", "id": tool_id, "name": tool, "input": partial}], "max_tokens", "truncated:tool_use"
        return [{"type": "tool_use", "id": tool_id, "name": tool, "input": metadata}], "tool_use", ""

    # -- Titan -----------------------------------------------------------------------------

    def _titan(self, model_id: str, body: dict[str, Any], rec: dict[str, Any]):
        for key in body:
            if key not in ("inputText", "inputImage", "embeddingConfig"):
                raise _validation(f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again.")
        config = body.get("embeddingConfig", {})
        if not isinstance(config, dict):
            raise _validation("Malformed input request: #/embeddingConfig: expected type: JSONObject, please reformat your input and try again.")
        dim = config.get("outputEmbeddingLength", 1024)
        if dim not in TITAN_DIMS or isinstance(dim, bool):
            raise _validation(
                f"Malformed input request: #/embeddingConfig/outputEmbeddingLength: {dim} is not a valid enum value, please reformat your input and try again."
            )
        text = body.get("inputText")
        encoded = body.get("inputImage")
        if text is None and encoded is None:
            raise _validation("Malformed input request: at least one of inputText or inputImage is required, please reformat your input and try again.")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise _validation("Malformed input request: #/inputText: expected a non-empty string, please reformat your input and try again.")
        facts = None
        if encoded is not None:
            if isinstance(encoded, str) and len(encoded) > TITAN_MAX_BASE64:
                raise _validation("Input image is too large.")
            data = self._decode_b64(encoded, "inputImage")
            actual = sniff(data)
            if actual not in TITAN_MEDIA_TYPES:
                raise _validation("Unsupported image format: only PNG and JPEG images are supported.")
            width, height = _image_size(data)
            if width > TITAN_MAX_SIDE or height > TITAN_MAX_SIDE:
                raise _validation("Image exceeds max pixels allowed.")
            facts = self._facts_for(data, actual, size=(width, height))
            rec.update(media_types=(actual,), image_sha256=(facts.sha256,))
        rec.update(dims=dim, has_text=text is not None)
        fault = self.faults.draw(claude=False, followup=False)
        self._fault_prelude(fault, "titan")
        parts = []
        if facts is not None:
            parts.append(image_vector(facts, dim))
        if text is not None:
            parts.append(text_vector(text, dim))
        vector = _unit(sum(parts))
        text_tokens = _text_tokens(text) if text is not None else 0
        rec.update(outcome="ok")
        answer = {"embedding": [round(float(v), 7) for v in vector], "inputTextTokenCount": text_tokens, "message": None}
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(text_tokens + (1 if facts else 0))}
        return self._finish(fault, answer, headers, (text_tokens, 0), rec)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (or ``--lifetime`` seconds)."""
    parser = argparse.ArgumentParser(
        description="Bedrock-compatible test server on loopback. Besides InvokeModel (and the control "
        "plane's GetFoundationModel, for AWS_ENDPOINT_URL_BEDROCK) it serves "
        f"GET {COUNTERS_PATH} (counters as JSON; ?log=1 adds [model, outcome, at] per request) "
        f"and POST {RESET_PATH} (clears counters and quota windows)."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--unavailable-rate", type=float, default=0.0, help="share of requests answered 503")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request, every model")
    parser.add_argument("--claude-latency", type=float, default=None, help="seconds per Claude request")
    parser.add_argument("--titan-latency", type=float, default=None, help="seconds per Titan request")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="latency varies by +/- this fraction")
    parser.add_argument("--rpm-quota", type=int, default=None, help="requests per minute per model id")
    parser.add_argument(
        "--quota-window", type=float, default=60.0,
        help="seconds of the sliding window the quota is enforced over (rpm * window / 60 requests in it)",
    )
    parser.add_argument("--log-size", type=int, default=10_000, help="requests kept in the log")
    args = parser.parse_args(argv)
    latency = {"*": args.latency}
    if args.claude_latency is not None:
        latency["anthropic"] = args.claude_latency
    if args.titan_latency is not None:
        latency["titan"] = args.titan_latency
    plan = FaultPlan(
        seed=args.seed,
        throttle_rate=args.throttle_rate,
        unavailable_rate=args.unavailable_rate,
        latency=latency,
        latency_jitter=args.latency_jitter,
        rpm_quota=args.rpm_quota,
        quota_window_s=args.quota_window,
    )
    server = BedrockServer(faults=plan, port=args.port, max_lifetime=args.lifetime, log_size=args.log_size).start()
    print(f"AWS_ENDPOINT_URL_BEDROCK_RUNTIME={server.endpoint_url}", flush=True)
    try:
        while not server._stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(json.dumps(server.counters.snapshot()["outcomes"]), flush=True)


if __name__ == "__main__":
    main()
