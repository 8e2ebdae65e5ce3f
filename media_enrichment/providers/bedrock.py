"""Amazon Bedrock providers: Claude describes images, Titan Multimodal Embeddings G1 embeds them.

Why InvokeModel rather than Converse
------------------------------------
The describer calls ``InvokeModel`` with the Anthropic Messages body
(``anthropic_version: bedrock-2023-05-31``). That body is the one Anthropic documents and keeps
stable across Claude versions (forced tools, image blocks, ``stop_reason`` values such as
``max_tokens`` and ``refusal`` come through unchanged), it is exactly the ``modelInput`` that
Bedrock batch inference (``CreateModelInvocationJob``) takes, so a later batch mode can reuse
``BedrockDescriber.request_body`` record for record, and the same ``InvokeModel`` operation
serves Titan embeddings (Converse does not do embeddings), so one code path, one error
translation and one fake server cover both models. Converse would buy model portability
across vendors, which this describer does not need: its prompt and tool are Claude-specific.

Structured output
-----------------
A tool whose ``input_schema`` is the metadata schema is forced with
``tool_choice = {"type": "tool", "name": ...}``, so the answer normally is a ``tool_use`` block
whose ``input`` is validated into ``ImageMetadata``. Answers that are text holding JSON (prose
around it, code fences, trailing commas) are repaired where that is safe. A truncated answer
(``stop_reason == "max_tokens"``), a refusal, or an answer with no usable metadata gets a
corrective follow-up turn (the original image and prompt, the previous answer, and what was
wrong with it), at most ``corrective_turns`` times; then ``InvalidResponseError`` carries the
last raw answer in ``.raw`` so the pipeline can store it. Tokens of every turn are summed.

How retries are layered
-----------------------
1. botocore (configured in ``media_enrichment.aws``) is the only in-process retry layer for
   transport-level problems: throttling (429), 500/502/503/504, ``ModelNotReadyException``,
   read timeouts and connection errors, with ``standard`` or ``adaptive`` backoff and jitter
   and a client-wide retry quota that stops retry storms.
2. The providers do *not* loop on top of that: a second in-process loop would multiply the
   attempts (and the bill) by botocore's and bypass its retry quota. Once botocore gives up,
   or for ``ModelTimeoutException`` (408, which botocore does not retry), the call raises
   ``RetryableProviderError`` and the caller (the Prefect task, then the next run through the
   ``failures`` table) decides when to try that image again.
3. The only provider-level repetition is the bounded corrective turn above, which is about
   the *content* of an answer, not about transport.

Rate control
------------
Each provider may hold a ``ModelGate`` (``media_enrichment.throttle``): every InvokeModel call
takes a concurrency slot, one request and (Claude) its estimated input tokens (image
``w * h / 750`` plus the text) before it is sent. Because botocore retries inside one
``invoke_model`` call, a ``response-received`` hook on the client reports every HTTP attempt to
the gate of the call in flight on that thread: a throttled attempt cuts the gate's adaptive
concurrency and takes one more request from its budget before botocore's retry; a success
grows the concurrency back. The hook only observes: botocore's retry decision is unchanged.

Which Claude model
------------------
Unless a model is configured, the describer is Claude Haiku 4.5 through the cross-Region
inference profile of the run's region's geography (``resolve_describer_model``): Claude 4.x
models are not served on demand by their bare id. A configured model id, profile id or ARN is
used verbatim. The start-up check (``BedrockDescriber.check_access``) turns a retired model, a
bare id that needs a profile, or a refused parameter into one line naming the fix, and, where
the caller may call ``bedrock:GetFoundationModel``, warns when the model is ``LEGACY``.

Errors are translated at this edge (``translate_error``): nothing botocore-specific escapes
this module.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import ValidationError

from media_enrichment.aws import bedrock_control_client, bedrock_runtime_client, make_session
from media_enrichment.config import Settings
from media_enrichment.errors import (
    ConfigError,
    FatalProviderError,
    InvalidResponseError,
    ProviderError,
    RejectedRequestError,
    RetryableProviderError,
)
from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, PreparedImage
from media_enrichment.prompts import PromptTemplate, load_prompt
from media_enrichment.providers.base import Describer, Description, Embedder
from media_enrichment.schema import ImageMetadata
from media_enrichment.throttle import ModelGate, RateLimiter, build_gates

logger = logging.getLogger(__name__)

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_DESCRIBER_BASE_MODEL",
    "METADATA_TOOL",
    "TITAN_DIMS",
    "BedrockDescriber",
    "BedrockEmbedder",
    "ModelLifecycle",
    "base_model_id",
    "build_bedrock_providers",
    "estimate_claude_input_tokens",
    "install_gate_hook",
    "model_lifecycle",
    "parse_claude_answer",
    "profile_geography",
    "resolve_describer_model",
    "translate_error",
]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
TOOL_NAME = "record_image_metadata"
TITAN_DIMS = (256, 384, 1024)
DEFAULT_TITAN_MODEL = "amazon.titan-embed-image-v1"
# Output ceiling used when a truncated answer is retried with a larger budget: every Claude 3+
# model accepts 4096 output tokens; a larger configured ``max_tokens`` is kept as is.
_SAFE_OUTPUT_CEILING = 4096
_MAX_RAW_ECHO = 4000  # characters of a bad answer echoed back in a corrective turn

_LIST_ITEMS = {"type": "array", "items": {"type": "string"}}

METADATA_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Record the catalogue metadata of the image: title, description, keywords, "
    "tags and the text visible in it.",
    "input_schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "A short, specific title."},
            "description": {"type": "string", "description": "One to three factual sentences."},
            "keywords": {**_LIST_ITEMS, "description": "Search keywords or short phrases."},
            "tags": {**_LIST_ITEMS, "description": "Lower-case category tags."},
            "ocr_texts": {
                **_LIST_ITEMS,
                "description": "Every text visible in the image, verbatim, one item per line or "
                "label; empty if there is none.",
            },
        },
        "required": ["title", "description", "keywords", "tags", "ocr_texts"],
    },
}

# ---------------------------------------------------------------------------------------------
# Which Claude model: the default, inference profiles, lifecycle
# ---------------------------------------------------------------------------------------------

#: The default describer, Claude Haiku 4.5, called through an inference profile: Claude 4.x
#: models are served on demand only through one (the bare id is refused).
DEFAULT_DESCRIBER_BASE_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
#: The setting a user changes to pick another describer (named in the fix lines).
DESCRIBER_SETTING = "MEDIA_ENRICH_DESCRIBER_MODEL_ID"

#: Region (or region prefix) -> geography of Claude Haiku 4.5's cross-Region inference profiles
#: (its Bedrock model card lists us., eu., jp., au. and global.). The longest match wins; a
#: region matching none (Canada, South America, most of Asia Pacific, GovCloud, or an unknown
#: region) uses the global profile.
_HAIKU_45_GEOGRAPHIES: dict[str, str] = {
    "us-gov-": "global",  # GovCloud has no us. profile of this model: set the model id explicitly there
    "us-": "us",
    "eu-": "eu",
    "ap-northeast-1": "jp",  # Tokyo
    "ap-northeast-3": "jp",  # Osaka
    "ap-southeast-2": "au",  # Sydney
    "ap-southeast-4": "au",  # Melbourne
}
#: Prefixes of system-defined (cross-Region) inference profile ids.
PROFILE_GEOGRAPHIES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "in", "global")

_EOL_MESSAGE = re.compile(r"reached the end of its life|end[- ]of[- ]life", re.IGNORECASE)
_ON_DEMAND_MESSAGE = re.compile(
    r"on-demand throughput isn\S?t supported|inference profile that contains", re.IGNORECASE
)
_SAMPLING_MESSAGE = re.compile(r"temperature`? and `?top_p`? cannot both be specified", re.IGNORECASE)


def profile_geography(region: str | None) -> str:
    """The geography of the default model's inference profile for a region.

    Args:
        region: the AWS region of the run (``client.meta.region_name``), or ``None``.

    Returns:
        ``"us"``, ``"eu"``, ``"jp"`` or ``"au"`` where Claude Haiku 4.5 has a profile of that
        geography; ``"global"`` for any other or unknown region.
    """
    region = (region or "").strip().lower()
    matches = [prefix for prefix in _HAIKU_45_GEOGRAPHIES if region.startswith(prefix)]
    return _HAIKU_45_GEOGRAPHIES[max(matches, key=len)] if matches else "global"


def resolve_describer_model(region: str | None, model_id: str | None = None) -> str:
    """The Claude model id the describer calls: the one configured, or the default's profile.

    Args:
        region: the run's AWS region (picks the default's geography); ``None`` if unknown.
        model_id: ``settings.describer_model_id``: any model id, profile id or ARN is returned
            verbatim (without surrounding blanks); ``None`` or blank means the default.

    Returns:
        E.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` for us-east-1, ``global.anthropic…``
        for a region without a geographic profile.
    """
    if model_id is not None and model_id.strip():
        return model_id.strip()
    return f"{profile_geography(region)}.{DEFAULT_DESCRIBER_BASE_MODEL}"


def base_model_id(model_id: str) -> str | None:
    """The foundation model behind a model id, a cross-Region profile id, or their ARNs.

    Args:
        model_id: e.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` or
            ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.…``.

    Returns:
        The foundation model id (``anthropic.claude-haiku-4-5-20251001-v1:0``), or ``None`` for an
        ARN that does not name one (application inference profiles, provisioned models).
    """
    model_id = model_id.strip()
    if model_id.startswith("arn:"):
        kind, _, name = model_id.split(":", 5)[-1].partition("/")
        if kind not in ("foundation-model", "inference-profile") or not name:
            return None
        model_id = name
    head, dot, rest = model_id.partition(".")
    if dot and rest and head in PROFILE_GEOGRAPHIES:
        return rest
    return model_id


@dataclass(frozen=True)
class ModelLifecycle:
    """A foundation model's lifecycle as ``GetFoundationModel`` reports it."""

    model_id: str  # the foundation model looked up
    status: str  # "ACTIVE" or "LEGACY"
    legacy_since: datetime | None = None
    end_of_life: datetime | None = None
    extended_access_from: datetime | None = None  # public extended access: higher prices from then


def model_lifecycle(control_client: Any, model_id: str) -> ModelLifecycle | None:
    """Look up the lifecycle of the foundation model behind ``model_id`` (one call, never raises).

    Args:
        control_client: a ``bedrock`` (control plane) client (``aws.bedrock_control_client``).
        model_id: a model id, profile id or ARN; a profile is looked up by its base model.

    Returns:
        The lifecycle, or ``None`` when it cannot be known: no ``bedrock:GetFoundationModel``
        permission, an unknown model, an id that names no foundation model, or any other error
        (each logged at debug level only).
    """
    base = base_model_id(model_id)
    if base is None:
        logger.debug("model lifecycle of %s not looked up: the id names no foundation model", model_id)
        return None
    try:
        details = control_client.get_foundation_model(modelIdentifier=base).get("modelDetails") or {}
    except Exception as exc:  # noqa: BLE001 - an optional look-up: AccessDenied or any error changes nothing
        logger.debug("model lifecycle of %s not looked up: %s", base, exc)
        return None
    lifecycle = details.get("modelLifecycle") or {}
    status = str(lifecycle.get("status") or "").upper()
    if not status:
        logger.debug("GetFoundationModel(%s) reported no lifecycle status", base)
        return None

    def when(key: str) -> datetime | None:
        value = lifecycle.get(key)
        return value if isinstance(value, datetime) else None

    return ModelLifecycle(
        model_id=base,
        status=status,
        legacy_since=when("legacyTime"),
        end_of_life=when("endOfLifeTime"),
        extended_access_from=when("publicExtendedAccessTime"),
    )


def _utc_day(moment: datetime) -> str:
    """``YYYY-MM-DD`` of a timestamp, in UTC (naive timestamps are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).date().isoformat()


def _is_aws_endpoint(url: str | None) -> bool:
    host = (url or "").split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _control_client_for(session: Any, runtime: Any, settings: Settings) -> Any:
    """The ``bedrock`` client for lifecycle look-ups, or ``None`` when it would reach another
    service than the runtime calls do (runtime pointed at a compatible endpoint, control plane
    still at AWS)."""
    try:
        control = bedrock_control_client(session, settings=settings)
    except Exception as exc:  # noqa: BLE001 - the look-up is optional
        logger.debug("no bedrock control-plane client: %s", exc)
        return None
    if _is_aws_endpoint(control.meta.endpoint_url) and not _is_aws_endpoint(runtime.meta.endpoint_url):
        logger.debug(
            "model lifecycle not looked up: bedrock-runtime goes to %s; "
            "set AWS_ENDPOINT_URL_BEDROCK for its control plane",
            runtime.meta.endpoint_url,
        )
        return None
    return control


# ---------------------------------------------------------------------------------------------
# Error translation (the edge)
# ---------------------------------------------------------------------------------------------

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelNotReadyException",
        # Per-minute/day quotas: the same request succeeds later.
        "ServiceQuotaExceededException",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
REJECTED_CODES = frozenset({"ValidationException", "ModelErrorException", "SerializationException"})
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "UnauthorizedOperation",
    }
)

_FATAL_HINTS = {
    "AccessDeniedException": "enable access to the model in the Bedrock console and allow "
    "bedrock:InvokeModel on it",
    "ResourceNotFoundException": "check the model id and that the model is offered in this region",
    "UnrecognizedClientException": "the AWS credentials were not recognised",
    "InvalidSignatureException": "the AWS credentials do not match (check the secret key)",
    "ExpiredTokenException": "the AWS session token has expired",
    "ExpiredToken": "the AWS session token has expired",
}


def translate_error(exc: Exception, *, model_id: str, region: str | None) -> ProviderError:
    """Turn a botocore exception into the library's error hierarchy.

    Args:
        exc: what botocore raised (``ClientError`` or a ``BotoCoreError``).
        model_id: the model the request was for (named in the message).
        region: the client's region (named in the message).

    Returns:
        A ``RetryableProviderError``, ``RejectedRequestError`` or ``FatalProviderError``
        (``code`` is the service's error code or the botocore exception's name). Messages never
        contain credentials. A model id that needs an inference profile (a
        ``ValidationException`` no request to that id escapes) is fatal, not one image's failure.
    """
    where = f"model {model_id!r} in region {region or '?'}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "").strip()
        status = int(meta.get("HTTPStatusCode") or 0)
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        detail = f"{code} (HTTP {status}) from Bedrock for {where}: {message or 'no message'}"
        if code in FATAL_CODES or (status in (401, 403) and code not in RETRYABLE_CODES):
            hint = _FATAL_HINTS.get(code)
            if code == "ResourceNotFoundException" and _EOL_MESSAGE.search(message):
                hint = "the model has reached end of life on Bedrock: choose a current model"
            return FatalProviderError(detail + (f"; {hint}" if hint else ""), code=code)
        if code == "ValidationException" and _ON_DEMAND_MESSAGE.search(message):
            # No request to this id can succeed: it needs an inference profile. Not one image's fault.
            return FatalProviderError(f"{detail}; use an inference profile id or ARN for this model", code=code)
        if code in RETRYABLE_CODES:
            return RetryableProviderError(f"{detail} (after {attempts} attempt(s))", code=code)
        if code in REJECTED_CODES:
            return RejectedRequestError(detail, code=code)
        if status == 429 or status == 408 or status >= 500:
            return RetryableProviderError(f"{detail} (after {attempts} attempt(s))", code=code)
        return RejectedRequestError(detail, code=code)

    name = type(exc).__name__
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return FatalProviderError(
            f"no usable AWS credentials for {where} ({name}): configure the standard chain "
            "(environment, profile or role)",
            code=name,
        )
    if isinstance(exc, (NoRegionError, ProfileNotFound)):
        return FatalProviderError(f"AWS configuration error for {where}: {exc}", code=name)
    if isinstance(exc, ParamValidationError):
        return RejectedRequestError(f"request for {where} failed client-side validation: {exc}", code=name)
    if isinstance(
        exc,
        (ReadTimeoutError, EndpointConnectionError, ConnectionClosedError, BotoConnectionError, HTTPClientError),
    ):
        return RetryableProviderError(f"network error calling {where} ({name}): {exc}", code=name)
    if isinstance(exc, BotoCoreError):
        return RetryableProviderError(f"botocore error calling {where} ({name}): {exc}", code=name)
    return RetryableProviderError(f"unexpected error calling {where} ({name}): {exc}", code=name)


# ---------------------------------------------------------------------------------------------
# Rate control: every InvokeModel goes through the model's gate; a botocore hook reports each
# HTTP attempt (botocore retries inside one ``invoke_model`` call) to the gate of the call in
# flight on this thread.
# ---------------------------------------------------------------------------------------------

_THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})
_GATE_EVENT = "response-received.bedrock-runtime.InvokeModel"
_GATE_HOOK_ID = "media-enrichment-gate"
_current = threading.local()  # .gate: the ModelGate of the call in flight on this thread


def _on_response(response_dict: Any = None, parsed_response: Any = None, exception: Any = None, **_: Any) -> None:
    """botocore ``response-received`` handler: report one attempt's outcome to its gate.

    Observes only (its return value is ignored by botocore), so botocore's retry decision is
    unchanged. Throttling (429, except ModelNotReady) cuts the gate's concurrency; a 2xx grows
    it; a throttled or 5xx attempt, which botocore retries, takes one more request from the
    gate's request budget first.
    """
    gate: ModelGate | None = getattr(_current, "gate", None)
    if gate is None or not isinstance(response_dict, dict):
        return
    status = int(response_dict.get("status_code") or 0)
    error = (parsed_response or {}).get("Error") if isinstance(parsed_response, dict) else None
    code = str((error or {}).get("Code") or "")
    if 200 <= status < 300:
        gate.succeeded()
        return
    throttled = code in _THROTTLE_CODES or (status == 429 and code != "ModelNotReadyException")
    if throttled:
        gate.throttled()
    if throttled or status == 429 or status >= 500:
        gate.retry_budget()


def install_gate_hook(client: Any) -> None:
    """Register the attempt-reporting hook on a ``bedrock-runtime`` client (idempotent).

    Args:
        client: the shared client; the hook reports to whichever gate the calling thread holds.
    """
    client.meta.events.register(_GATE_EVENT, _on_response, unique_id=_GATE_HOOK_ID)


def estimate_claude_input_tokens(width: int, height: int, text_chars: int) -> int:
    """Input tokens of a Claude request with one image: ``w * h / 750`` plus ~4 chars a token.

    Args:
        width: the image's width as sent (within Claude's limits, so not scaled again).
        height: its height.
        text_chars: characters of text in the request (prompt, tool schema, earlier turns).

    Returns:
        The estimate (at least 1).
    """
    return max(1, math.ceil(width * height / 750) + math.ceil(text_chars / 4))


def _invoke_json(
    client: Any,
    model_id: str,
    body: dict[str, Any],
    region: str | None,
    *,
    gate: ModelGate | None = None,
    tokens: int = 0,
) -> dict[str, Any]:
    """One InvokeModel call with a JSON body, through ``gate``; errors translated, the answer parsed."""
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    try:
        if gate is None:
            response = client.invoke_model(
                modelId=model_id, body=payload, contentType="application/json", accept="application/json"
            )
            raw = response["body"].read()
        else:
            with gate.call(tokens=tokens):
                previous, _current.gate = getattr(_current, "gate", None), gate
                try:
                    response = client.invoke_model(
                        modelId=model_id, body=payload, contentType="application/json", accept="application/json"
                    )
                    raw = response["body"].read()
                finally:
                    _current.gate = previous
    except (ClientError, BotoCoreError) as exc:
        raise translate_error(exc, model_id=model_id, region=region) from exc
    try:
        answer = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise InvalidResponseError(
            f"Bedrock returned a body that is not JSON for model {model_id!r}", code="UnparseableBody", raw=text
        ) from None
    if not isinstance(answer, dict):
        raise InvalidResponseError(
            f"Bedrock returned JSON that is not an object for model {model_id!r}",
            code="UnparseableBody",
            raw=json.dumps(answer),
        )
    return answer


def _tiny_png() -> bytes:
    """A 1x1 white PNG for access checks."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Parsing Claude's answers
# ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_LIST_FIELDS = ("keywords", "tags", "ocr_texts")
_FIELDS = ("title", "description", "keywords", "tags", "ocr_texts")


def _loads_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (strict, then with trailing commas removed)."""
    decoder = json.JSONDecoder()
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        start = candidate.find("{")
        tries = 0
        while start != -1 and tries < 50:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
            tries += 1
    return None


def extract_json_object(text: str) -> dict[str, Any] | None:
    """Find the metadata object in a text answer, repairing only what is safe to repair.

    Handles prose before or after the JSON, code fences (with or without a language tag) and
    trailing commas. Does not guess at cut or otherwise broken JSON.

    Args:
        text: the model's text.

    Returns:
        The first JSON object found (fenced blocks first), or ``None``.
    """
    if not text or "{" not in text:
        return None
    for block in _FENCE.findall(text):
        found = _loads_object(block)
        if found is not None:
            return found
    return _loads_object(text)


def _unwrap(obj: dict[str, Any]) -> dict[str, Any]:
    """Accept ``{"input": {...}}`` / ``{"metadata": {...}}`` style wrappers around the fields."""
    if any(field in obj for field in _FIELDS):
        return obj
    for value in obj.values():
        if isinstance(value, dict) and any(field in value for field in _FIELDS):
            return value
    return obj


def _to_metadata(obj: dict[str, Any]) -> ImageMetadata:
    obj = dict(_unwrap(obj))
    for field in _LIST_FIELDS:
        value = obj.get(field)
        # A list sometimes arrives JSON-encoded inside a string: decode it rather than split it.
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                obj[field] = decoded
    return ImageMetadata.model_validate(obj)


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "answer"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts)


class ParsedAnswer:
    """Outcome of parsing one Claude answer: metadata, or the reason it is unusable."""

    __slots__ = ("metadata", "problem", "kind", "raw")

    def __init__(self, *, metadata: ImageMetadata | None, problem: str | None, kind: str, raw: str):
        self.metadata = metadata
        self.problem = problem
        self.kind = kind  # "ok", "truncated", "refusal", "no_metadata", "invalid"
        self.raw = raw


def parse_claude_answer(answer: dict[str, Any]) -> ParsedAnswer:
    """Parse a Claude Messages response body into metadata.

    Args:
        answer: the decoded InvokeModel body (``content``, ``stop_reason``, ``usage``).

    Returns:
        A ``ParsedAnswer``: ``metadata`` set when usable, else ``kind``/``problem`` saying why,
        and ``raw``, the answer's text (a tool call's input as JSON).
    """
    content = answer.get("content") if isinstance(answer.get("content"), list) else []
    stop_reason = answer.get("stop_reason")
    tool_input: dict[str, Any] | None = None
    texts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use" and isinstance(block.get("input"), dict) and tool_input is None:
            tool_input = block["input"]
        elif block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
    text = "\n".join(texts).strip()
    raw = json.dumps(tool_input, ensure_ascii=False) if tool_input is not None else text
    if tool_input is not None and text:
        raw = text + "\n" + raw

    if stop_reason == "max_tokens":
        return ParsedAnswer(metadata=None, problem="the answer was cut off at max_tokens", kind="truncated", raw=raw)
    if stop_reason == "refusal":
        return ParsedAnswer(metadata=None, problem="the model refused to answer", kind="refusal", raw=raw)

    candidate = tool_input if tool_input is not None else extract_json_object(text)
    if candidate is None:
        if text:
            return ParsedAnswer(
                metadata=None,
                problem="the answer held no metadata object (text without JSON)",
                kind="no_metadata",
                raw=raw,
            )
        return ParsedAnswer(metadata=None, problem="the answer was empty", kind="no_metadata", raw=raw)
    try:
        metadata = _to_metadata(candidate)
    except ValidationError as exc:
        return ParsedAnswer(
            metadata=None, problem=f"the metadata was invalid: {_summarise(exc)}", kind="invalid", raw=raw
        )
    return ParsedAnswer(metadata=metadata, problem=None, kind="ok", raw=raw)


def _corrective_text(parsed: ParsedAnswer) -> str:
    call = f"Call the tool `{TOOL_NAME}` now with title, description, keywords, tags and ocr_texts."
    if parsed.kind == "truncated":
        return (
            "Your previous answer was cut off before it was complete. " + call + " Keep it short: "
            "a description of at most three sentences and no more than 10 keywords and 10 tags."
        )
    if parsed.kind == "refusal":
        return (
            "This is a routine cataloguing task: record only what is visibly in the image, without "
            "identifying people. " + call
        )
    return f"Your previous answer could not be used: {parsed.problem}. {call}"


# ---------------------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------------------


def _region_of(client: Any) -> str | None:
    meta = getattr(client, "meta", None)
    return getattr(meta, "region_name", None)


class BedrockDescriber(Describer):
    """Claude on Bedrock (InvokeModel, Messages API, forced metadata tool)."""

    image_limits = CLAUDE_LIMITS

    def __init__(
        self,
        client: Any,
        *,
        model_id: str,
        prompt: PromptTemplate | None = None,
        max_tokens: int = 1024,
        corrective_turns: int = 2,
        temperature: float | None = None,
        gate: ModelGate | None = None,
        control_client: Any = None,
    ):
        """Create a describer.

        Args:
            client: a ``bedrock-runtime`` client (see ``media_enrichment.aws``); shared, thread-safe.
            model_id: a Claude model id or inference profile id / ARN (must contain
                ``anthropic.``, e.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0``; see
                ``resolve_describer_model`` for the default).
            prompt: the prompt template (default: the packaged ``describe_v1``).
            max_tokens: Claude's ``max_tokens`` for the first turn.
            corrective_turns: extra turns allowed after an unusable answer (0 to 5).
            temperature: sent only when given. It is the only sampling parameter sent: ``top_p``
                never is, since Claude 4.5+ models refuse the two together.
            gate: rate and concurrency control for every call (default: none); each call takes
                its estimated input tokens from the gate's token budget.
            control_client: a ``bedrock`` (control plane) client; when given, ``check_access``
                also looks up the model's lifecycle and warns if it is ``LEGACY``.

        Raises:
            ConfigError: the model id is not a Claude model, or a bound is out of range.
        """
        if not isinstance(model_id, str) or "anthropic." not in model_id:
            raise ConfigError(f"describer model id {model_id!r} is not a Claude model id (expected 'anthropic.')")
        if not 0 <= corrective_turns <= 5:
            raise ConfigError("corrective_turns must be between 0 and 5")
        if max_tokens < 1:
            raise ConfigError("max_tokens must be positive")
        self.client = client
        self.model_id = model_id
        self.prompt = prompt if prompt is not None else load_prompt()
        self.prompt_version = self.prompt.version
        self.max_tokens = max_tokens
        self.corrective_turns = corrective_turns
        self.temperature = temperature
        self.region = _region_of(client)
        self.gate = gate
        self.control_client = control_client
        self.lifecycle: ModelLifecycle | None = None  # set by check_access when it can be looked up
        if gate is not None:
            install_gate_hook(client)
        # Text sent with every image: the prompt and the tool's schema.
        self._fixed_chars = len(self.prompt.text) + len(json.dumps(METADATA_TOOL))

    def image_message(self, image: PreparedImage) -> dict[str, Any]:
        """The first user turn: the image, then the prompt.

        Args:
            image: prepared within ``CLAUDE_LIMITS``; its ``media_type`` is sent as is.

        Returns:
            A Messages API ``user`` message.
        """
        return {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": image.media_type, "data": image.base64},
                },
                {"type": "text", "text": self.prompt.text},
            ],
        }

    def estimate_tokens(self, image: PreparedImage, messages: list[dict[str, Any]]) -> int:
        """Input tokens of one request for the token budget: the image, prompt, tool, earlier turns.

        Args:
            image: the image sent (within Claude's limits).
            messages: the conversation sent.

        Returns:
            ``w * h / 750`` plus about one token per 4 characters of text.
        """
        extra = 0
        for message in messages[1:]:
            for block in message.get("content") or ():
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    extra += len(block["text"])
        return estimate_claude_input_tokens(image.width, image.height, self._fixed_chars + extra)

    def request_body(self, messages: list[dict[str, Any]], *, max_tokens: int | None = None) -> dict[str, Any]:
        """The InvokeModel body (also a valid batch-inference ``modelInput``).

        Args:
            messages: the conversation so far, ending with a user turn.
            max_tokens: overrides the describer's ``max_tokens``.

        Returns:
            The Anthropic Messages body with the forced metadata tool.
        """
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": max_tokens or self.max_tokens,
            "messages": messages,
            "tools": [METADATA_TOOL],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            **self._sampling(),
        }
        return body

    def _sampling(self) -> dict[str, Any]:
        """The sampling parameters of every request: ``temperature`` when set, never ``top_p``
        with it (Claude 4.5+ answer 400 to the pair)."""
        return {} if self.temperature is None else {"temperature": self.temperature}

    def describe(self, image: PreparedImage) -> Description:
        """Describe one image.

        Args:
            image: the image, already within ``CLAUDE_LIMITS``.

        Returns:
            The validated metadata, with input and output tokens summed over every turn.

        Raises:
            RetryableProviderError: throttling, 5xx, timeouts once botocore's retries are spent.
            RejectedRequestError: the service rejected the request (e.g. media type mismatch).
            FatalProviderError: no access, unknown model, no credentials.
            InvalidResponseError: no usable answer within the corrective turns; ``raw`` holds the
                last answer.
        """
        first = self.image_message(image)
        messages = [first]
        max_tokens = self.max_tokens
        input_tokens = output_tokens = 0
        problems: list[str] = []
        parsed: ParsedAnswer | None = None
        turns = 1 + self.corrective_turns
        for turn in range(turns):
            answer = _invoke_json(
                self.client,
                self.model_id,
                self.request_body(messages, max_tokens=max_tokens),
                self.region,
                gate=self.gate,
                tokens=self.estimate_tokens(image, messages),
            )
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            input_tokens += _as_int(usage.get("input_tokens"))
            output_tokens += _as_int(usage.get("output_tokens"))
            parsed = parse_claude_answer(answer)
            if parsed.metadata is not None:
                if turn:
                    logger.info("model %s: usable answer after %d corrective turn(s)", self.model_id, turn)
                return Description(metadata=parsed.metadata, input_tokens=input_tokens, output_tokens=output_tokens)
            problems.append(f"turn {turn + 1}: {parsed.problem}")
            logger.info("model %s: unusable answer (%s) on turn %d of %d", self.model_id, parsed.kind, turn + 1, turns)
            if turn + 1 == turns:
                break
            echo = (parsed.raw or "(no answer)").strip()[:_MAX_RAW_ECHO] or "(no answer)"
            messages = [
                first,
                {"role": "assistant", "content": [{"type": "text", "text": echo}]},
                {"role": "user", "content": [{"type": "text", "text": _corrective_text(parsed)}]},
            ]
            if parsed.kind == "truncated":
                max_tokens = min(max_tokens * 2, max(self.max_tokens, _SAFE_OUTPUT_CEILING))
        assert parsed is not None
        raise InvalidResponseError(
            f"no usable metadata from model {self.model_id!r} after {turns} turn(s) "
            f"({input_tokens} input / {output_tokens} output tokens): " + "; ".join(problems),
            code=parsed.kind,
            raw=parsed.raw,
        )

    def check_access(self) -> None:
        """Send one tiny request (a 1x1 PNG, a few output tokens) to prove the model is usable,
        then, with a control-plane client, warn if the model is ``LEGACY``.

        The request carries the same sampling parameters as every description, so a refused
        combination shows here, before any image.

        Raises:
            FatalProviderError: access denied, unknown model, bad or missing credentials, or a
                request the model refuses outright; the message names the model id and region.
                A retired model, a bare id that needs an inference profile, and refused sampling
                parameters each get one line naming the fix (which setting, to what value).
            RetryableProviderError: throttled or unavailable right now (access is unknown).
        """
        body = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": 8,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": PreparedImage(_tiny_png(), "image/png", 1, 1).base64,
                            },
                        },
                        {"type": "text", "text": "Reply with the single word OK."},
                    ],
                }
            ],
            **self._sampling(),
        }
        try:
            _check(
                lambda: _invoke_json(self.client, self.model_id, body, self.region, gate=self.gate, tokens=16),
                self.model_id,
                self.region,
            )
        except FatalProviderError as exc:
            fix = self._fix_line(str(exc), exc.code)
            if fix is None:
                raise
            raise FatalProviderError(fix, code=exc.code) from exc
        if self.control_client is not None:
            self.check_lifecycle()

    def _fix_line(self, message: str, code: str | None) -> str | None:
        """One line naming the fix for a refusal no request to this model can escape, or None."""
        where = f"region {self.region or '?'}"
        if code == "ResourceNotFoundException" and _EOL_MESSAGE.search(message):
            return (
                f"model {self.model_id} has reached end of life on Bedrock ({where}): set {DESCRIBER_SETTING} "
                f"to a current one{self._suggestion(' (or unset it for the default)')}"
            )
        if code == "ValidationException" and _ON_DEMAND_MESSAGE.search(message):
            profile = f"{profile_geography(self.region)}.{base_model_id(self.model_id) or self.model_id}"
            return (
                f"model {self.model_id} is not served on demand by its bare id ({where}): use an inference profile: "
                f"set {DESCRIBER_SETTING}={profile}"
            )
        if code == "ValidationException" and _SAMPLING_MESSAGE.search(message):
            return (
                f"model {self.model_id} refuses temperature and top_p together ({where}): "
                "send only one of them (the describer's temperature setting)"
            )
        return None

    def check_lifecycle(self) -> ModelLifecycle | None:
        """Look up the model's lifecycle (``GetFoundationModel``) and warn if it is ``LEGACY``.

        Returns:
            The lifecycle (also kept as ``self.lifecycle``), or ``None`` without a control-plane
            client, permission or answer: nothing else happens then (a debug log line).
        """
        if self.control_client is None:
            return None
        self.lifecycle = model_lifecycle(self.control_client, self.model_id)
        found = self.lifecycle
        if found is not None and found.status == "LEGACY":
            eol = _utc_day(found.end_of_life) if found.end_of_life else "a date not yet announced"
            extended = (
                f"; higher prices from {_utc_day(found.extended_access_from)} (extended access)"
                if found.extended_access_from
                else ""
            )
            logger.warning(
                "model %s (%s) is LEGACY on Bedrock and reaches end of life on %s (region %s)%s: set %s to a "
                "current model%s before then",
                self.model_id, found.model_id, eol, self.region or "?", extended, DESCRIBER_SETTING,
                self._suggestion(),
            )
        return found

    def _suggestion(self, unset: str = "") -> str:
        """`` such as <the default's profile>`` (plus ``unset``), unless this model is the default's."""
        current = resolve_describer_model(self.region)
        if base_model_id(current) == base_model_id(self.model_id):
            return ""
        return f" such as {current}{unset}"


def _check(call: Any, model_id: str, region: str | None) -> None:
    try:
        call()
    except RejectedRequestError as exc:
        raise FatalProviderError(
            f"access check for model {model_id!r} in region {region or '?'} was rejected: {exc}", code=exc.code
        ) from exc
    except InvalidResponseError:
        pass  # the model answered: access works


def _as_int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def embedding_vector(embedding: Any, answer: dict[str, Any], *, model_id: str, dim: int) -> np.ndarray:
    """Check an embedding model's vector and return it as float32.

    Args:
        embedding: the vector as found in the answer.
        answer: the whole decoded answer (kept, cut, in the error for inspection).
        model_id: the model that answered (named in the error).
        dim: the length asked for.

    Returns:
        A float32 array of ``dim`` finite values.

    Raises:
        InvalidResponseError: missing, wrong length, non-numeric or non-finite values.
    """
    if not isinstance(embedding, list) or len(embedding) != dim:
        got = len(embedding) if isinstance(embedding, list) else type(embedding).__name__
        raise InvalidResponseError(
            f"model {model_id!r} returned an embedding of {got}, expected {dim} floats"
            + (f" ({answer['message']})" if answer.get("message") else ""),
            code="BadEmbedding",
            raw=json.dumps(answer)[:2000],
        )
    try:
        vector = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidResponseError(
            f"model {model_id!r} returned non-numeric embedding values", code="BadEmbedding"
        ) from None
    if not np.all(np.isfinite(vector)):
        raise InvalidResponseError(f"model {model_id!r} returned non-finite values", code="BadEmbedding")
    return vector


class BedrockEmbedder(Embedder):
    """Titan Multimodal Embeddings G1 on Bedrock (InvokeModel)."""

    image_limits = TITAN_LIMITS
    dims = TITAN_DIMS

    def __init__(
        self, client: Any, *, model_id: str = DEFAULT_TITAN_MODEL, dim: int = 1024, gate: ModelGate | None = None
    ):
        """Create an embedder.

        Args:
            client: a ``bedrock-runtime`` client; shared, thread-safe.
            model_id: ``amazon.titan-embed-image-v1`` (or an id containing ``titan-embed-image``).
            dim: vector length, 256, 384 or 1024.
            gate: rate and concurrency control for every call (default: none).

        Raises:
            ConfigError: unsupported model id or dimension.
        """
        if not isinstance(model_id, str) or "titan-embed-image" not in model_id:
            raise ConfigError(f"embedder model id {model_id!r} is not a Titan multimodal embeddings model")
        if dim not in TITAN_DIMS:
            raise ConfigError(f"embedding dim must be one of {TITAN_DIMS}, got {dim}")
        self.client = client
        self.model_id = model_id
        self.dim = int(dim)
        self.region = _region_of(client)
        self.gate = gate
        if gate is not None:
            install_gate_hook(client)

    def _embed(self, body: dict[str, Any]) -> np.ndarray:
        body = {**body, "embeddingConfig": {"outputEmbeddingLength": self.dim}}
        answer = _invoke_json(self.client, self.model_id, body, self.region, gate=self.gate)
        return embedding_vector(answer.get("embedding"), answer, model_id=self.model_id, dim=self.dim)

    def embed_image(self, image: PreparedImage, *, text: str | None = None) -> np.ndarray:
        """Embed one image (optionally with a caption, which Titan averages in).

        Args:
            image: PNG or JPEG within ``TITAN_LIMITS``.
            text: optional text embedded together with the image.

        Returns:
            A float32 vector of length ``dim``.

        Raises:
            RetryableProviderError, RejectedRequestError, FatalProviderError, InvalidResponseError.
        """
        body: dict[str, Any] = {"inputImage": image.base64}
        if text:
            body["inputText"] = text
        return self._embed(body)

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a text query into the image space.

        Args:
            text: the query (Titan accepts a short text, about 128 tokens).

        Returns:
            A float32 vector of length ``dim``.

        Raises:
            ValueError: the text is empty.
            RetryableProviderError, RejectedRequestError, FatalProviderError, InvalidResponseError.
        """
        if not text or not text.strip():
            raise ValueError("cannot embed an empty text")
        return self._embed({"inputText": text.strip()})

    def check_access(self) -> None:
        """Embed a two-word text to prove the model is usable.

        Raises:
            FatalProviderError: access denied, unknown model, bad credentials, rejected request;
                the message names the model id and region.
            RetryableProviderError: throttled or unavailable right now.
        """
        _check(lambda: self.embed_text("access check"), self.model_id, self.region)


def build_bedrock_providers(
    settings: Settings,
    *,
    limiters: Mapping[str, RateLimiter] | None = None,
    max_in_flight: int | None = None,
    session: Any = None,
) -> tuple[BedrockDescriber, Embedder]:
    """Wire the Bedrock describer and embedder: one session, one client shared by both.

    The embedder is chosen by ``embedder_model_id``: Titan Multimodal Embeddings G1
    (``BedrockEmbedder``) or Amazon Nova Multimodal Embeddings (``providers.nova.NovaEmbedder``);
    see ``providers.embedders.bedrock_embedder_class``.

    Each model gets a ``ModelGate`` from ``throttle.build_gates``: requests and tokens per
    minute (``describer_rpm``, ``describer_tpm``, ``embedder_rpm``; local token buckets unless
    ``limiters`` supplies shared ones) and, with ``adaptive_concurrency``, calls in flight that
    back off on throttling. With none of those set, the gates only count.

    Args:
        settings: the run's settings (models, prompt file, max tokens, AWS, retry and rate options).
        limiters: rate limiters by name (``"describer-rpm"``, ``"describer-tpm"``,
            ``"embedder-rpm"``), e.g. ``media_enrichment_prefect.tasks.limits.ensure_rate_limits(settings)``, used instead
            of local buckets.
        max_in_flight: ceiling of calls in flight per model (default ``settings.concurrency``).
        session: a boto3 session to use (e.g. from a prefect-aws ``AwsCredentials`` block);
            default: one from the standard credential chain, ``aws_profile`` and ``aws_region``.

    Returns:
        ``(describer, embedder)``; their gates are ``describer.gate`` and ``embedder.gate``.

    Raises:
        ConfigError: unknown profile, no region, bad prompt file or model ids.
    """
    if session is None:
        session = make_session(profile=settings.aws_profile, region=settings.aws_region)
    client = bedrock_runtime_client(session, settings=settings)
    prompt = load_prompt(settings.prompt_file)
    describer_gate, embedder_gate = build_gates(settings, limiters=limiters, max_in_flight=max_in_flight)
    describer = BedrockDescriber(
        client,
        # The configured id verbatim, or Claude Haiku 4.5 through the profile of the client's region.
        model_id=resolve_describer_model(_region_of(client), settings.describer_model_id),
        prompt=prompt,
        max_tokens=settings.max_output_tokens,
        gate=describer_gate,
        control_client=_control_client_for(session, client, settings),
    )
    from media_enrichment.providers.embedders import bedrock_embedder_class

    embedder = bedrock_embedder_class(settings.embedder_model_id)(
        client, model_id=settings.embedder_model_id, dim=settings.embedding_dim, gate=embedder_gate
    )
    return describer, embedder
