"""Claude describes images on Bedrock: ``BedrockDescriber`` and its request bodies.

Why InvokeModel rather than Converse
------------------------------------
The describer calls ``InvokeModel`` with the Anthropic Messages body
(``anthropic_version: bedrock-2023-05-31``). That body is the one Anthropic documents and keeps
stable across Claude versions (forced tools, image blocks, ``stop_reason`` values such as
``max_tokens`` and ``refusal`` come through unchanged), it is exactly the ``modelInput`` that
Bedrock batch inference (``CreateModelInvocationJob``) takes, so a later batch mode can reuse
``BedrockDescriber.request_body`` record for record, and the same ``InvokeModel`` operation
serves the embedders (Converse does not do embeddings), so one code path, one error
translation and one fake server cover every model. Converse would buy model portability
across vendors, which this describer does not need: its prompt and tool are Claude-specific.

Corrective turns
----------------
An answer with no usable metadata (``answers.parse_claude_answer``: truncated at
``max_tokens``, a refusal, no or invalid metadata) gets a corrective follow-up turn (the
original image and prompt, the previous answer, and what was wrong with it), at most
``corrective_turns`` times; then ``InvalidResponseError`` carries the last raw answer in
``.raw`` so the pipeline can store it. Tokens of every turn are summed.

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

Each call takes its estimated input tokens (``media_enrichment.tokens``) from the describer's
``ModelGate`` before it is sent.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from media_enrichment.errors import ConfigError, FatalProviderError, InvalidResponseError
from media_enrichment.images import CLAUDE_LIMITS, PreparedImage
from media_enrichment.images.encode import Base64Text
from media_enrichment.prompts import PromptTemplate, load_prompt
from media_enrichment.providers.base import Describer, Description
from media_enrichment.providers.bedrock.answers import (
    METADATA_TOOL,
    TOOL_NAME,
    ParsedAnswer,
    corrective_text,
    parse_claude_answer,
)
from media_enrichment.providers.bedrock.errors import access_check, fix_line
from media_enrichment.providers.bedrock.hooks import install_gate_hook
from media_enrichment.providers.bedrock.invoke import BodyFrames, invoke_json, region_of
from media_enrichment.providers.bedrock.models import ModelLifecycle, model_lifecycle, warn_if_legacy
from media_enrichment.ratecontrol import ModelGate, calls_in_flight
from media_enrichment.tokens import request_tokens

logger = logging.getLogger(__name__)

__all__ = ["ANTHROPIC_VERSION", "BedrockDescriber"]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Output ceiling used when a truncated answer is retried with a larger budget: every Claude 3+
# model accepts 4096 output tokens; a larger configured ``max_tokens`` is kept as is.
_SAFE_OUTPUT_CEILING = 4096
_MAX_RAW_ECHO = 4000  # characters of a bad answer echoed back in a corrective turn


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
        self.region = region_of(client)
        self.gate = gate
        self.control_client = control_client
        self.lifecycle: ModelLifecycle | None = None  # set by check_access when it can be looked up
        if gate is not None:
            install_gate_hook(client)
        # Text sent with every image: the prompt and the tool's schema.
        self._fixed_chars = len(self.prompt.text) + len(json.dumps(METADATA_TOOL))
        self._frames = BodyFrames()

    def image_message(self, image: PreparedImage) -> dict[str, Any]:
        """The first user turn: the image, then the prompt.

        Args:
            image: prepared within ``CLAUDE_LIMITS``; its ``media_type`` is sent as is.

        Returns:
            A Messages API ``user`` message.
        """
        return self._image_message(image.media_type, image.base64)

    def _image_message(self, media_type: str, data: Base64Text) -> dict[str, Any]:
        return {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}},
                {"type": "text", "text": self.prompt.text},
            ],
        }

    def _first_turn(self, image: PreparedImage, max_tokens: int) -> bytes:
        """The first turn's body as JSON bytes: every image's first turn is the same body but
        for the image, so the rest is serialised once per media type (``BodyFrames``)."""
        media_type = image.media_type
        return self._frames.payload(
            (media_type, max_tokens, self.temperature, self.prompt.text), image.base64,
            lambda data: self.request_body([self._image_message(media_type, data)], max_tokens=max_tokens),
        )

    def estimate_tokens(self, image: PreparedImage, messages: list[dict[str, Any]]) -> int:
        """Input tokens of one request for the token budget: the image, prompt, tool, earlier turns.

        Args:
            image: the image sent (within Claude's limits).
            messages: the conversation sent.

        Returns:
            ``media_enrichment.tokens.request_tokens``: the image's tokens plus the text's.
        """
        extra = 0
        for message in messages[1:]:
            for block in message.get("content") or ():
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    extra += len(block["text"])
        return request_tokens(image.width, image.height, self._fixed_chars + extra)

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

    def describe(self, image: PreparedImage, *, prior: tuple[ParsedAnswer, int, int] | None = None) -> Description:
        """Describe one image.

        Args:
            image: the image, already within ``CLAUDE_LIMITS``.
            prior: an unusable answer to the first turn obtained elsewhere (a batch job's record),
                with its input and output tokens: the conversation goes on from it with a
                corrective turn instead of asking the first turn again.

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
        start = 0
        if prior is not None and prior[0].metadata is None and turns > 1:
            parsed, input_tokens, output_tokens = prior
            problems.append(f"turn 1 (batch): {parsed.problem}")
            messages, max_tokens = self._corrected(first, parsed, max_tokens)
            start = 1
        for turn in range(start, turns):
            answer = invoke_json(
                self.client,
                self.model_id,
                self._first_turn(image, max_tokens) if turn == 0 else self.request_body(messages, max_tokens=max_tokens),
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
            messages, max_tokens = self._corrected(first, parsed, max_tokens)
        assert parsed is not None
        raise InvalidResponseError(
            f"no usable metadata from model {self.model_id!r} after {turns} turn(s) "
            f"({input_tokens} input / {output_tokens} output tokens): " + "; ".join(problems),
            code=parsed.kind,
            raw=parsed.raw,
        )

    def _corrected(
        self, first: dict[str, Any], parsed: ParsedAnswer, max_tokens: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The conversation after an unusable answer (echoed back, then a corrective turn), and
        the budget of the next turn (doubled after a truncated answer, up to a ceiling)."""
        echo = (parsed.raw or "(no answer)").strip()[:_MAX_RAW_ECHO] or "(no answer)"
        messages = [
            first,
            {"role": "assistant", "content": [{"type": "text", "text": echo}]},
            {"role": "user", "content": [{"type": "text", "text": corrective_text(parsed)}]},
        ]
        if parsed.kind == "truncated":
            max_tokens = min(max_tokens * 2, max(self.max_tokens, _SAFE_OUTPUT_CEILING))
        return messages, max_tokens

    @property
    def calls_in_flight(self) -> int:
        """The cap of this model's call window (1 without a gate)."""
        return calls_in_flight(self.gate)

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
            access_check(
                lambda: invoke_json(self.client, self.model_id, body, self.region, gate=self.gate, tokens=16),
                self.model_id,
                self.region,
            )
        except FatalProviderError as exc:
            fix = fix_line(str(exc), exc.code, model_id=self.model_id, region=self.region)
            if fix is None:
                raise
            raise FatalProviderError(fix, code=exc.code) from exc
        if self.control_client is not None:
            self.check_lifecycle()

    def check_lifecycle(self) -> ModelLifecycle | None:
        """Look up the model's lifecycle (``GetFoundationModel``) and warn if it is ``LEGACY``.

        Returns:
            The lifecycle (also kept as ``self.lifecycle``), or ``None`` without a control-plane
            client, permission or answer: nothing else happens then (a debug log line).
        """
        if self.control_client is None:
            return None
        self.lifecycle = model_lifecycle(self.control_client, self.model_id)
        warn_if_legacy(self.lifecycle, model_id=self.model_id, region=self.region)
        return self.lifecycle


def _as_int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _tiny_png() -> bytes:
    """A 1x1 white PNG for access checks."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(buffer, format="PNG")
    return buffer.getvalue()
