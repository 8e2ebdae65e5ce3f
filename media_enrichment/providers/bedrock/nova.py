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

``NovaEmbedder`` shares its constructor, model id and size checks, InvokeModel call (error
translation, ``ModelGate`` and attempt hook) and vector checks with Titan through
``providers.bedrock.embedders.BedrockEmbedderBase``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from media_enrichment.errors import ImageError
from media_enrichment.images import NOVA_EMBED_LIMITS, PreparedImage
from media_enrichment.providers.bedrock.embedders import BedrockEmbedderBase

__all__ = [
    "DEFAULT_NOVA_MODEL",
    "INDEX_PURPOSE",
    "NOVA_SCHEMA_VERSION",
    "NOVA_TEXT_MAX_CHARS",
    "QUERY_PURPOSE",
    "NovaEmbedder",
]

DEFAULT_NOVA_MODEL = "amazon.nova-2-multimodal-embeddings-v1:0"
NOVA_SCHEMA_VERSION = "nova-multimodal-embed-v1"
#: Purpose of every stored image's vector.
INDEX_PURPOSE = "GENERIC_INDEX"
#: Purpose of every query vector: the index holds STANDARD_IMAGE image vectors only.
QUERY_PURPOSE = "IMAGE_RETRIEVAL"
#: ``text.value`` is at most this many characters (Nova's request schema).
NOVA_TEXT_MAX_CHARS = 8192
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


class NovaEmbedder(BedrockEmbedderBase):
    """Amazon Nova Multimodal Embeddings on Bedrock (InvokeModel, SINGLE_EMBEDDING)."""

    model_name = "Amazon Nova Multimodal Embeddings"
    default_model = DEFAULT_NOVA_MODEL
    model_pattern = re.compile(r"^amazon\.nova-[a-z0-9.-]*multimodal-embeddings[a-z0-9.-]*(:\d+)?$")
    max_text_chars = NOVA_TEXT_MAX_CHARS
    image_limits = NOVA_EMBED_LIMITS
    #: ``embeddingDimension`` values the model accepts (its default, 3072, is never left implicit).
    dims = (256, 384, 1024, 3072)
    index_purpose = INDEX_PURPOSE
    query_purpose = QUERY_PURPOSE

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
        answer = self._call(body)
        embeddings = answer.get("embeddings")
        first = embeddings[0] if isinstance(embeddings, list) and embeddings else None
        return self._vector(first.get("embedding") if isinstance(first, dict) else None, answer)

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
        caption = self._embed(self.text_body(self.checked_text(text), purpose=self.index_purpose))
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
        return self._embed(self.text_body(self.checked_text(text), purpose=self.query_purpose))


def _normalised_mean(*vectors: np.ndarray) -> np.ndarray:
    mean = np.mean(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm else mean).astype(np.float32)
