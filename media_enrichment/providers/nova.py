"""Amazon Nova Multimodal Embeddings on Bedrock (InvokeModel): the second embedder beside Titan G1.

The request body is Nova's synchronous schema::

    {"schemaVersion": "nova-multimodal-embed-v1", "taskType": "SINGLE_EMBEDDING",
     "singleEmbeddingParams": {"embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 1024,
                               "image": {"format": "png", "source": {"bytes": "<base64>"}}}}

with exactly one input (``image`` or ``text``) per request; the vector comes back at
``embeddings[0].embedding``.

Embedding purposes
------------------
Nova optimises a vector for its use. AWS's guidance: index content of any modality with
``GENERIC_INDEX``; embed a query with the ``*_RETRIEVAL`` value of what the *index* holds
(``IMAGE_RETRIEVAL`` for "a repository containing only image embeddings created with the
STANDARD_IMAGE detailLevel", ``GENERIC_RETRIEVAL`` for a mixed-modality one), whatever the
query's own modality; their example is an image search app queried with text, which uses
``IMAGE_RETRIEVAL`` for the text queries. Our assets table holds image vectors only, so stored
images use ``GENERIC_INDEX`` and every query, text (``embed_text``) or image
(``embed_query_image``), uses ``IMAGE_RETRIEVAL`` (``NovaEmbedder.query_purpose``).

Text with an image
------------------
Titan G1 fuses ``inputText`` and ``inputImage`` into one averaged vector; Nova takes one input
per request. ``embed_image(image, text=...)`` therefore embeds both (two requests, both
``GENERIC_INDEX``) and returns their normalised mean, the fusion AWS's migration samples use.
The pipeline embeds stored images alone (``ChunkEnricher`` calls ``embed_image(image)``), for
Titan and Nova alike, so a run makes one Nova request per image.

Calls go through ``providers.bedrock``'s InvokeModel helper: the same error translation, the
same ``ModelGate`` rate control and attempt-reporting hook, the same vector checks as Titan.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from media_enrichment.errors import ConfigError, ImageError
from media_enrichment.images import NOVA_EMBED_LIMITS, PreparedImage
from media_enrichment.providers.base import Embedder
from media_enrichment.providers.bedrock import (
    _check,
    _invoke_json,
    _region_of,
    embedding_vector,
    install_gate_hook,
)
from media_enrichment.throttle import ModelGate

__all__ = [
    "DEFAULT_NOVA_MODEL",
    "INDEX_PURPOSE",
    "NOVA_DIMS",
    "NOVA_SCHEMA_VERSION",
    "NOVA_TEXT_MAX_CHARS",
    "QUERY_PURPOSE",
    "NovaEmbedder",
]

DEFAULT_NOVA_MODEL = "amazon.nova-2-multimodal-embeddings-v1:0"
NOVA_SCHEMA_VERSION = "nova-multimodal-embed-v1"
#: ``embeddingDimension`` values the model accepts (its default, 3072, is never left implicit).
NOVA_DIMS = (256, 384, 1024, 3072)
#: Purpose of every stored image's vector.
INDEX_PURPOSE = "GENERIC_INDEX"
#: Purpose of every query vector: the index holds STANDARD_IMAGE image vectors only.
QUERY_PURPOSE = "IMAGE_RETRIEVAL"
#: ``text.value`` is at most this many characters (Nova's request schema).
NOVA_TEXT_MAX_CHARS = 8192
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


class NovaEmbedder(Embedder):
    """Amazon Nova Multimodal Embeddings on Bedrock (InvokeModel, SINGLE_EMBEDDING)."""

    image_limits = NOVA_EMBED_LIMITS
    dims = NOVA_DIMS
    index_purpose = INDEX_PURPOSE
    query_purpose = QUERY_PURPOSE

    def __init__(
        self, client: Any, *, model_id: str = DEFAULT_NOVA_MODEL, dim: int = 1024, gate: ModelGate | None = None
    ):
        """Create an embedder.

        Args:
            client: a ``bedrock-runtime`` client; shared, thread-safe.
            model_id: ``amazon.nova-2-multimodal-embeddings-v1:0`` (or a profile id / ARN of it);
                stored as the dataset's ``embedding_model``.
            dim: vector length, one of ``NOVA_DIMS`` (256, 384, 1024, 3072).
            gate: rate and concurrency control for every call (default: none).

        Raises:
            ConfigError: not a Nova multimodal embeddings model id, or an unsupported dimension.
        """
        if not isinstance(model_id, str) or "nova" not in model_id or "multimodal-embeddings" not in model_id:
            raise ConfigError(f"embedder model id {model_id!r} is not an Amazon Nova Multimodal Embeddings model")
        if isinstance(dim, bool) or dim not in NOVA_DIMS:
            raise ConfigError(f"embedding dim must be one of {NOVA_DIMS} for {model_id}, got {dim}")
        self.client = client
        self.model_id = model_id
        self.dim = int(dim)
        self.region = _region_of(client)
        self.gate = gate
        if gate is not None:
            install_gate_hook(client)

    # -- request bodies (each is also a valid batch-inference ``modelInput``) ----------------

    def request_body(self, content: dict[str, Any], *, purpose: str) -> dict[str, Any]:
        """The InvokeModel body for one input.

        Args:
            content: ``{"image": {...}}`` or ``{"text": {...}}`` (exactly one input).
            purpose: the ``embeddingPurpose``.

        Returns:
            The SINGLE_EMBEDDING body with this embedder's ``embeddingDimension``.
        """
        params = {"embeddingPurpose": purpose, "embeddingDimension": self.dim, **content}
        return {"schemaVersion": NOVA_SCHEMA_VERSION, "taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": params}

    def image_body(self, image: PreparedImage, *, purpose: str) -> dict[str, Any]:
        """The body embedding one image (``format`` from its true media type, base64 bytes).

        Raises:
            ImageError: a media type Nova does not take (prepare images within ``image_limits``).
        """
        fmt = _FORMATS.get(image.media_type)
        if fmt is None:
            raise ImageError(f"Nova embeds png, jpeg, gif or webp images, not {image.media_type}")
        return self.request_body({"image": {"format": fmt, "source": {"bytes": image.base64}}}, purpose=purpose)

    def text_body(self, text: str, *, purpose: str) -> dict[str, Any]:
        """The body embedding one text (cut by the service at its token limit: ``truncationMode`` END)."""
        return self.request_body({"text": {"truncationMode": "END", "value": text}}, purpose=purpose)

    # -- calls -------------------------------------------------------------------------------

    def _embed(self, body: dict[str, Any]) -> np.ndarray:
        answer = _invoke_json(self.client, self.model_id, body, self.region, gate=self.gate)
        embeddings = answer.get("embeddings")
        first = embeddings[0] if isinstance(embeddings, list) and embeddings else None
        embedding = first.get("embedding") if isinstance(first, dict) else None
        return embedding_vector(embedding, answer, model_id=self.model_id, dim=self.dim)

    def embed_image(self, image: PreparedImage, *, text: str | None = None) -> np.ndarray:
        """Embed one stored image (``GENERIC_INDEX``).

        Args:
            image: PNG, JPEG, GIF or WebP within ``NOVA_EMBED_LIMITS``.
            text: optional caption. Nova takes one input per request, so the caption is embedded
                in a second request and the result is the normalised mean of the two vectors
                (Titan fuses both in one request). The pipeline passes no caption.

        Returns:
            A float32 vector of length ``dim``.

        Raises:
            ImageError: a media type Nova does not take.
            RetryableProviderError, RejectedRequestError, FatalProviderError, InvalidResponseError.
        """
        vector = self._embed(self.image_body(image, purpose=self.index_purpose))
        if not text or not text.strip():
            return vector
        caption = self._embed(self.text_body(_checked_text(text), purpose=self.index_purpose))
        return _normalised_mean(vector, caption)

    def embed_query_image(self, image: PreparedImage) -> np.ndarray:
        """Embed an image used as a search query (``IMAGE_RETRIEVAL``).

        Args:
            image: the query image, within ``NOVA_EMBED_LIMITS``.

        Returns:
            A float32 vector of length ``dim``.

        Raises:
            ImageError, RetryableProviderError, RejectedRequestError, FatalProviderError,
            InvalidResponseError.
        """
        return self._embed(self.image_body(image, purpose=self.query_purpose))

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a text query into the image space (``IMAGE_RETRIEVAL``, see the module docstring).

        Args:
            text: the query, at most ``NOVA_TEXT_MAX_CHARS`` characters.

        Returns:
            A float32 vector of length ``dim``.

        Raises:
            ValueError: the text is empty or too long.
            RetryableProviderError, RejectedRequestError, FatalProviderError, InvalidResponseError.
        """
        return self._embed(self.text_body(_checked_text(text), purpose=self.query_purpose))

    def check_access(self) -> None:
        """Embed a two-word text to prove the model is usable.

        Raises:
            FatalProviderError: access denied, unknown model, bad credentials, rejected request;
                the message names the model id and region.
            RetryableProviderError: throttled or unavailable right now.
        """
        _check(lambda: self.embed_text("access check"), self.model_id, self.region)


def _checked_text(text: str) -> str:
    if not text or not text.strip():
        raise ValueError("cannot embed an empty text")
    text = text.strip()
    if len(text) > NOVA_TEXT_MAX_CHARS:
        raise ValueError(f"Nova embeds texts of at most {NOVA_TEXT_MAX_CHARS} characters, got {len(text)}")
    return text


def _normalised_mean(*vectors: np.ndarray) -> np.ndarray:
    mean = np.mean(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm else mean).astype(np.float32)
