"""Titan Multimodal Embeddings G1 on the test server: ``InvokeModel`` with Titan's schema.

The body may hold only ``inputText``, ``inputImage`` (base64 PNG or JPEG, at most 2048 px a side
and 25 MB of base64) and ``embeddingConfig.outputEmbeddingLength`` (256, 384 or 1024, default
1024); at least one input is required. The answer is ``{"embedding": [...],
"inputTextTokenCount": n}``: the average of the image's and the text's unit vectors (see
``content``), so a text naming a colour lands near images of that colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from media_enrichment.testing.content import (
    decode_base64,
    image_size,
    image_vector,
    sniff,
    text_tokens,
    text_vector,
    unit,
)
from media_enrichment.testing.errors import validation

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

__all__ = ["TITAN_DIMS", "handle_titan"]

TITAN_MEDIA_TYPES = ("image/jpeg", "image/png")
TITAN_DIMS = (256, 384, 1024)
TITAN_MAX_SIDE = 2048
TITAN_MAX_BASE64 = 25 * 1024 * 1024


def handle_titan(server: BedrockServer, model_id: str, body: dict[str, Any], rec: dict[str, Any]):
    """Answer one Titan InvokeModel request (called from ``BedrockServer``).

    Returns:
        ``(status, answer, headers, (input_tokens, output_tokens))``.

    Raises:
        ServiceError: 400 ValidationException for a body the service would refuse; injected faults.
    """
    for key in body:
        if key not in ("inputText", "inputImage", "embeddingConfig"):
            raise validation(f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again.")
    config = body.get("embeddingConfig", {})
    if not isinstance(config, dict):
        raise validation("Malformed input request: #/embeddingConfig: expected type: JSONObject, please reformat your input and try again.")
    dim = config.get("outputEmbeddingLength", 1024)
    if dim not in TITAN_DIMS or isinstance(dim, bool):
        raise validation(
            f"Malformed input request: #/embeddingConfig/outputEmbeddingLength: {dim} is not a valid enum value, please reformat your input and try again."
        )
    text = body.get("inputText")
    encoded = body.get("inputImage")
    if text is None and encoded is None:
        raise validation("Malformed input request: at least one of inputText or inputImage is required, please reformat your input and try again.")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise validation("Malformed input request: #/inputText: expected a non-empty string, please reformat your input and try again.")
    facts = None
    if encoded is not None:
        if isinstance(encoded, str) and len(encoded) > TITAN_MAX_BASE64:
            raise validation("Input image is too large.")
        data = decode_base64(encoded, "inputImage")
        actual = sniff(data)
        if actual not in TITAN_MEDIA_TYPES:
            raise validation("Unsupported image format: only PNG and JPEG images are supported.")
        width, height = image_size(data)
        if width > TITAN_MAX_SIDE or height > TITAN_MAX_SIDE:
            raise validation("Image exceeds max pixels allowed.")
        facts = server.facts.facts_for(data, actual, size=(width, height))
        rec.update(media_types=(actual,), image_sha256=(facts.sha256,))
    rec.update(dims=dim, has_text=text is not None)
    fault = server.draw_fault("titan", images=() if facts is None else (facts,))
    parts = []
    if facts is not None:
        parts.append(image_vector(facts, dim))
    if text is not None:
        parts.append(text_vector(text, dim))
    vector = unit(sum(parts))
    tokens = text_tokens(text) if text is not None else 0
    rec.update(outcome="ok")
    answer = {"embedding": [round(float(v), 7) for v in vector], "inputTextTokenCount": tokens, "message": None}
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens + (1 if facts else 0))}
    return server.deliver(fault, answer, headers, (tokens, 0), rec)
