"""One InvokeModel call: through the model's gate, errors translated, the JSON answer decoded.

Every Bedrock model call of the describer and the embedders goes through ``invoke_json``, so
the rate control (``ModelGate`` and the attempt hook), the error translation and the checks on
the answer's body are the same for all of them.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Hashable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from media_enrichment.errors import InvalidResponseError
from media_enrichment.images.encode import Base64Text
from media_enrichment.providers.bedrock.errors import translate_error
from media_enrichment.providers.bedrock.hooks import reporting_to
from media_enrichment.ratecontrol import ModelGate

__all__ = ["BodyFrames", "invoke_json", "json_bytes", "region_of"]

#: Stands in a body for a ``Base64Text`` while the rest is serialised; random per process, so
#: no text of a body (the prompt, a corrective turn) can hold it.
_SLOT = f"media-enrichment-base64-{secrets.token_hex(8)}"


def region_of(client: Any) -> str | None:
    """The region of a boto3 client (``None`` if it has none)."""
    meta = getattr(client, "meta", None)
    return getattr(meta, "region_name", None)


def json_bytes(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON, the same bytes as ``json.dumps(body,
    separators=(",", ":")).encode()``, with each ``Base64Text`` spliced in as it is instead of
    scanned by the encoder (a 40 KB image string costs json.dumps ~0.2 ms; base64 needs no
    escaping, so splicing gives identical bytes)."""
    images: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Base64Text):
            images.append(value)
            return _SLOT
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(body), separators=(",", ":"))
    if not images:
        return text.encode("utf-8")
    pieces = text.split(_SLOT)
    out = [pieces[0]]
    for image, piece in zip(images, pieces[1:], strict=True):
        out += (image, piece)
    return "".join(out).encode("utf-8")


class BodyFrames:
    """Request bodies that differ only in their one base64 image, serialised once per key.

    A describer sends the same prompt, tool and parameters with every image, an embedder the
    same size: only the image changes. ``payload(key, image, build)`` serialises ``build``'s
    body once per ``key`` with a marker in the image's place, keeps the bytes before and after
    it, and gives every later body as those bytes around the image (the same bytes as
    ``json_bytes(build(image))``, without serialising the rest again: a Claude body's prompt
    and tool schema cost about 25 µs an image). The key must name everything of the body but
    the image (e.g. the media type and ``max_tokens``); ``build`` must place ``image`` once.
    """

    def __init__(self) -> None:
        self._frames: dict[Hashable, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def payload(self, key: Hashable, image: Base64Text, build: Callable[[Base64Text], Any]) -> bytes:
        """The JSON bytes of ``build(image)``.

        Raises:
            ValueError: ``build`` did not place the image exactly once.
        """
        frame = self._frames.get(key)
        if frame is None:
            marker = _SLOT.encode("ascii")
            parts = json_bytes(build(Base64Text(_SLOT))).split(marker)
            if len(parts) != 2:
                raise ValueError(f"a framed body must hold its image once, this one holds it {len(parts) - 1} times")
            with self._lock:
                frame = self._frames.setdefault(key, (parts[0], parts[1]))
        return b"".join((frame[0], image.encode("ascii"), frame[1]))


def _send(client: Any, model_id: str, payload: bytes) -> bytes:
    response = client.invoke_model(modelId=model_id, body=payload, contentType="application/json", accept="application/json")
    return response["body"].read()


def invoke_json(
    client: Any,
    model_id: str,
    body: dict[str, Any] | bytes,
    region: str | None,
    *,
    gate: ModelGate | None = None,
    tokens: int = 0,
) -> dict[str, Any]:
    """Send one InvokeModel request with a JSON body and return the decoded answer.

    Args:
        client: the ``bedrock-runtime`` client.
        model_id: the model, profile id or ARN called.
        body: the request body (serialised compactly), or its JSON bytes already (``BodyFrames``).
        region: the client's region (named in errors).
        gate: the model's gate: the call holds a slot, a request and ``tokens`` from it, and the
            hook reports every attempt to it (``None``: no rate control).
        tokens: the call's estimated input tokens, taken from the gate's token budget.

    Returns:
        The answer, a JSON object.

    Raises:
        RetryableProviderError, RejectedRequestError, FatalProviderError: from ``translate_error``.
        InvalidResponseError: the body is not a JSON object (``raw`` holds it).
    """
    payload = body if isinstance(body, bytes) else json_bytes(body)
    try:
        if gate is None:
            raw = _send(client, model_id, payload)
        else:
            with gate.call(tokens=tokens), reporting_to(gate):
                raw = _send(client, model_id, payload)
    except (ClientError, BotoCoreError) as exc:
        raise translate_error(exc, model_id=model_id, region=region) from exc
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
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
