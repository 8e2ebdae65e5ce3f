"""Amazon Nova Multimodal Embeddings on the test server: ``InvokeModel`` with Nova's schema.

``BedrockServer`` dispatches ``amazon.nova-*multimodal-embeddings*`` ids here. The body is
validated the way Nova's synchronous API documents it and answers a violation with 400
``ValidationException``:

* ``schemaVersion`` optional, ``nova-multimodal-embed-v1`` if given; ``taskType`` required and
  ``SINGLE_EMBEDDING`` (``SEGMENTED_EMBEDDING`` is async-only); no other top-level keys.
* ``singleEmbeddingParams.embeddingPurpose`` required, one of the nine purposes;
  ``embeddingDimension`` optional (default 3072), one of 256, 384, 1024, 3072.
* exactly one of ``text``, ``image``, ``video``, ``audio`` (this server embeds text and images).
* ``text``: ``truncationMode`` required (START, END, NONE), ``value`` a non-empty string of at
  most 8192 characters (``source`` needs S3, which this server does not read).
* ``image``: ``format`` required (png, jpeg, gif, webp) and matching the bytes, ``detailLevel``
  optional (STANDARD_IMAGE, DOCUMENT_IMAGE), ``source.bytes`` base64 (no ``s3Location``), at most
  25 MB of base64 and 8000 px a side.

Answers are deterministic and comparable across modalities, like Titan's on this server: an
image's vector follows its dominant colour and its hash, a text's the colour words it names
(``content.image_vector``/``content.text_vector``), so "a red poster" lands near red images. The response is
``{"embeddings": [{"embeddingType": "IMAGE"|"TEXT", "embedding": [...]}]}``. The purpose is
recorded on each ``RequestRecord`` (``purpose``); it does not change the vector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from media_enrichment.testing.content import decode_image, image_size, image_vector, text_tokens, text_vector, unit
from media_enrichment.testing.errors import validation

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

__all__ = ["NOVA_DIMS", "NOVA_MODELS", "NOVA_PURPOSES", "handle_nova"]

NOVA_MODELS = frozenset({"amazon.nova-2-multimodal-embeddings-v1:0"})
SCHEMA_VERSION = "nova-multimodal-embed-v1"
NOVA_DIMS = (256, 384, 1024, 3072)
NOVA_DEFAULT_DIM = 3072
NOVA_PURPOSES = (
    "GENERIC_INDEX",
    "GENERIC_RETRIEVAL",
    "TEXT_RETRIEVAL",
    "IMAGE_RETRIEVAL",
    "VIDEO_RETRIEVAL",
    "DOCUMENT_RETRIEVAL",
    "AUDIO_RETRIEVAL",
    "CLASSIFICATION",
    "CLUSTERING",
)
NOVA_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
NOVA_TEXT_MAX_CHARS = 8192
NOVA_MAX_BASE64 = 25 * 1024 * 1024
NOVA_MAX_SIDE = 8000
_INPUTS = ("text", "image", "video", "audio")


def _extraneous(where: str, found: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in found:
        if key not in allowed:
            raise validation(f"Malformed input request: {where}: extraneous key [{key}] is not permitted")


def _one_of(where: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise validation(f"Malformed input request: {where}: {value!r} is not a valid enum value ({', '.join(allowed)})")


def handle_nova(server: BedrockServer, model_id: str, body: dict[str, Any], rec: dict[str, Any]):
    """Answer one Nova InvokeModel request (called from ``BedrockServer``).

    Args:
        server: the server (facts cache, faults, latency).
        model_id: the model id as requested.
        body: the decoded JSON body.
        rec: the request's record fields, updated in place.

    Returns:
        ``(status, answer, headers, (input_tokens, output_tokens))`` like the server's handlers.

    Raises:
        ServiceError: 400 ValidationException for a body the service would refuse; injected faults.
    """
    _extraneous("#", body, ("schemaVersion", "taskType", "singleEmbeddingParams"))
    if "schemaVersion" in body and body["schemaVersion"] != SCHEMA_VERSION:
        raise validation(f"Malformed input request: #/schemaVersion: {body['schemaVersion']!r} is not a valid enum value")
    task = body.get("taskType")
    if task is None:
        raise validation("Malformed input request: #: required key [taskType] not found")
    if task == "SEGMENTED_EMBEDDING":
        raise validation("taskType SEGMENTED_EMBEDDING is only supported by StartAsyncInvoke")
    _one_of("#/taskType", task, ("SINGLE_EMBEDDING",))
    params = body.get("singleEmbeddingParams")
    if not isinstance(params, dict):
        raise validation("Malformed input request: #: required key [singleEmbeddingParams] not found")
    where = "#/singleEmbeddingParams"
    _extraneous(where, params, ("embeddingPurpose", "embeddingDimension", *_INPUTS))
    if "embeddingPurpose" not in params:
        raise validation(f"Malformed input request: {where}: required key [embeddingPurpose] not found")
    purpose = params["embeddingPurpose"]
    _one_of(f"{where}/embeddingPurpose", purpose, NOVA_PURPOSES)
    dim = params.get("embeddingDimension", NOVA_DEFAULT_DIM)
    if isinstance(dim, bool) or dim not in NOVA_DIMS:
        raise validation(f"Malformed input request: {where}/embeddingDimension: {dim} is not a valid enum value")
    inputs = [name for name in _INPUTS if name in params]
    if len(inputs) != 1:
        raise validation(
            f"Malformed input request: {where}: exactly one of text, image, video or audio must be provided, "
            f"found {len(inputs)}"
        )
    kind = inputs[0]
    if kind in ("video", "audio"):
        raise validation(f"{kind} embeddings are not served by this test server")
    content = params[kind]
    if not isinstance(content, dict):
        raise validation(f"Malformed input request: {where}/{kind}: expected type: JSONObject")
    rec.update(dims=dim, purpose=purpose, has_text=kind == "text")

    text = facts = None
    truncated: int | None = None
    if kind == "text":
        text, truncated = _text(content, f"{where}/text")
    else:
        facts = _image(server, content, f"{where}/image", rec)

    fault = server.draw_fault("nova", images=() if facts is None else (facts,))
    vector = image_vector(facts, dim) if facts is not None else text_vector(text or "", dim)
    item: dict[str, Any] = {
        "embeddingType": "IMAGE" if facts is not None else "TEXT",
        "embedding": [round(float(v), 7) for v in unit(vector)],
    }
    if truncated is not None:
        item["truncatedCharLength"] = truncated
    tokens = text_tokens(text) if text else 0
    rec.update(outcome="ok")
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens + (1 if facts is not None else 0))}
    return server.deliver(fault, {"embeddings": [item]}, headers, (tokens, 0), rec)


def _text(content: dict[str, Any], where: str) -> tuple[str, int | None]:
    _extraneous(where, content, ("truncationMode", "value", "source"))
    if "truncationMode" not in content:
        raise validation(f"Malformed input request: {where}: required key [truncationMode] not found")
    mode = content["truncationMode"]
    _one_of(f"{where}/truncationMode", mode, ("START", "END", "NONE"))
    if ("value" in content) == ("source" in content):
        raise validation(f"Malformed input request: {where}: exactly one of value or source must be provided")
    if "source" in content:
        raise validation("text from an S3 source is not served by this test server: send text.value")
    value = content["value"]
    if not isinstance(value, str) or not value.strip():
        raise validation(f"Malformed input request: {where}/value: expected a non-empty string")
    if len(value) > NOVA_TEXT_MAX_CHARS:
        if mode == "NONE":
            raise validation(f"{where}/value: text of {len(value)} characters exceeds the model's limit")
        cut = value[:NOVA_TEXT_MAX_CHARS] if mode == "END" else value[-NOVA_TEXT_MAX_CHARS:]
        return cut, NOVA_TEXT_MAX_CHARS
    return value, None


def _image(server: BedrockServer, content: dict[str, Any], where: str, rec: dict[str, Any]):
    _extraneous(where, content, ("format", "detailLevel", "source"))
    if "format" not in content:
        raise validation(f"Malformed input request: {where}: required key [format] not found")
    fmt = content["format"]
    _one_of(f"{where}/format", fmt, tuple(NOVA_FORMATS))
    if "detailLevel" in content:
        _one_of(f"{where}/detailLevel", content["detailLevel"], ("STANDARD_IMAGE", "DOCUMENT_IMAGE"))
    source = content.get("source")
    if not isinstance(source, dict):
        raise validation(f"Malformed input request: {where}: required key [source] not found")
    _extraneous(f"{where}/source", source, ("bytes", "s3Location"))
    if ("bytes" in source) == ("s3Location" in source):
        raise validation(f"Malformed input request: {where}/source: exactly one of bytes or s3Location must be provided")
    if "s3Location" in source:
        raise validation("images from S3 are not served by this test server: send source.bytes")
    encoded = source["bytes"]
    if isinstance(encoded, str) and len(encoded) > NOVA_MAX_BASE64:
        raise validation(f"{where}/source/bytes: the image exceeds the 25 MB payload limit")
    data, actual = decode_image(encoded, f"{where}/source/bytes")
    if actual != NOVA_FORMATS[fmt]:
        raise validation(f"The image format was specified as {fmt}, but the image appears to be a {actual} image")
    width, height = image_size(data)
    if width > NOVA_MAX_SIDE or height > NOVA_MAX_SIDE:
        raise validation(f"{where}: image dimensions {width}x{height} exceed the maximum of {NOVA_MAX_SIDE} pixels")
    facts = server.facts.facts_for(data, actual, size=(width, height))
    rec.update(media_types=(actual,), image_sha256=(facts.sha256,))
    return facts
