"""Bedrock embedders: the base they share, and Titan Multimodal Embeddings G1.

``BedrockEmbedderBase`` holds what every Bedrock embedder shares: which model ids it takes
(``model_pattern``, matched against the foundation model behind a profile id or ARN), the
vector sizes it makes (``dims``, declared once per class: settings validation, search and the
CLI read them), the client, region and gate, the InvokeModel call, the vector checks, the text
checks and the access check. A subclass writes its request bodies and says where the vector is
in the answer. Amazon Nova Multimodal Embeddings is in ``providers.bedrock.nova``.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import numpy as np

from media_enrichment.errors import ConfigError, InvalidResponseError
from media_enrichment.images import TITAN_LIMITS, PreparedImage
from media_enrichment.images.encode import Base64Text
from media_enrichment.providers.base import Embedder
from media_enrichment.providers.bedrock.errors import access_check
from media_enrichment.providers.bedrock.hooks import install_gate_hook
from media_enrichment.providers.bedrock.invoke import BodyFrames, invoke_json, region_of
from media_enrichment.providers.bedrock.models import base_model_id
from media_enrichment.ratecontrol import ModelGate, calls_in_flight

__all__ = ["DEFAULT_TITAN_MODEL", "BedrockEmbedder", "BedrockEmbedderBase", "embedding_vector"]

DEFAULT_TITAN_MODEL = "amazon.titan-embed-image-v1"


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
    # JSON numbers only: numpy would read "0.5" (a string) and true (a bool) as numbers, and
    # null as NaN. Checking the types of 1,024 values costs about 17 µs.
    if not _JSON_NUMBERS.issuperset(map(type, embedding)):
        raise InvalidResponseError(f"model {model_id!r} returned non-numeric embedding values", code="BadEmbedding")
    # fromiter converts value by value while holding the GIL; asarray's cast of a list this long
    # releases it, and taking it back costs a thread up to a switch interval (5 ms) in a busy
    # process. A value beyond float32's range becomes inf (numpy warns), which the finite check
    # refuses.
    vector = np.fromiter(embedding, dtype=np.float32, count=dim)
    if not np.isfinite(vector).all():
        raise InvalidResponseError(f"model {model_id!r} returned non-finite values", code="BadEmbedding")
    return vector


#: The types ``json.loads`` gives numbers (``bool`` is a subclass of ``int``, not ``int``).
_JSON_NUMBERS = frozenset((float, int))


class BedrockEmbedderBase(Embedder):
    """What a Bedrock embedder shares: model id and size checks, the call, vector and text checks."""

    #: The model's name in messages, e.g. ``Titan Multimodal Embeddings G1``.
    model_name: ClassVar[str]
    #: The model id used when none is given (also named in the fix for an unknown id).
    default_model: ClassVar[str]
    #: Foundation model ids this class calls (a profile id or ARN is matched by its base model).
    model_pattern: ClassVar[re.Pattern[str]]
    #: Longest text embedded, in characters (``None``: the service's own limit only).
    max_text_chars: ClassVar[int | None] = None

    @classmethod
    def accepts(cls, model_id: Any) -> bool:
        """Whether ``model_id`` (bare, a cross-Region profile id or an ARN) names this class's model."""
        base = base_model_id(model_id) if isinstance(model_id, str) else None
        return bool(base) and cls.model_pattern.match(base) is not None

    def __init__(self, client: Any, *, model_id: str | None = None, dim: int = 1024, gate: ModelGate | None = None):
        """Create an embedder.

        Args:
            client: a ``bedrock-runtime`` client; shared, thread-safe.
            model_id: the model id, profile id or ARN (default ``default_model``); stored as the
                dataset's ``embedding_model``.
            dim: vector length, one of the class's ``dims``.
            gate: rate and concurrency control for every call (default: none).

        Raises:
            ConfigError: a model id of another model, or a size the model does not make.
        """
        model_id = self.default_model if model_id is None else model_id
        if not self.accepts(model_id):
            raise ConfigError(f"embedder model id {model_id!r} does not name {self.model_name}")
        if isinstance(dim, bool) or dim not in self.dims:
            raise ConfigError(f"embedding dim must be one of {self.dims} for {model_id}, got {dim}")
        self.client = client
        self.model_id = model_id
        self.dim = int(dim)
        self.region = region_of(client)
        self.gate = gate
        self._frames = BodyFrames()
        if gate is not None:
            install_gate_hook(client)

    def _call(self, body: dict[str, Any] | bytes) -> dict[str, Any]:
        """One InvokeModel call through this embedder's gate; the decoded answer."""
        return invoke_json(self.client, self.model_id, body, self.region, gate=self.gate)

    def _vector(self, embedding: Any, answer: dict[str, Any]) -> np.ndarray:
        return embedding_vector(embedding, answer, model_id=self.model_id, dim=self.dim)

    def checked_text(self, text: str) -> str:
        """The text to embed, stripped.

        Raises:
            ValueError: the text is empty, or longer than ``max_text_chars``.
        """
        if not text or not text.strip():
            raise ValueError("cannot embed an empty text")
        text = text.strip()
        if self.max_text_chars is not None and len(text) > self.max_text_chars:
            raise ValueError(f"{self.model_name} embeds texts of at most {self.max_text_chars} characters, got {len(text)}")
        return text

    @property
    def calls_in_flight(self) -> int:
        """The cap of this model's call window (1 without a gate)."""
        return calls_in_flight(self.gate)

    def check_access(self) -> None:
        """Embed a two-word text to prove the model is usable.

        Raises:
            FatalProviderError: access denied, unknown model, bad credentials, rejected request;
                the message names the model id and region.
            RetryableProviderError: throttled or unavailable right now.
        """
        access_check(lambda: self.embed_text("access check"), self.model_id, self.region)


class BedrockEmbedder(BedrockEmbedderBase):
    """Titan Multimodal Embeddings G1 on Bedrock (InvokeModel)."""

    model_name = "Titan Multimodal Embeddings G1"
    default_model = DEFAULT_TITAN_MODEL
    model_pattern = re.compile(r"^amazon\.titan-embed-image-v\d+(:\d+)?$")
    image_limits = TITAN_LIMITS
    #: ``embeddingConfig.outputEmbeddingLength`` values the model accepts.
    dims = (256, 384, 1024)

    def image_body(self, image: PreparedImage, *, text: str | None = None) -> dict[str, Any]:
        """The InvokeModel body embedding one image (also a valid batch-inference ``modelInput``).

        Args:
            image: PNG or JPEG within ``TITAN_LIMITS``.
            text: optional text embedded together with the image.

        Returns:
            Titan's body: ``inputImage`` (base64), ``inputText`` if given, ``embeddingConfig``.
        """
        return self._image_body(image.base64, text)

    def _image_body(self, data: Base64Text, text: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"inputImage": data}
        if text:
            body["inputText"] = text
        return {**body, "embeddingConfig": {"outputEmbeddingLength": self.dim}}

    def text_body(self, text: str) -> dict[str, Any]:
        """The InvokeModel body embedding a text (already checked, see ``checked_text``)."""
        return {"inputText": text, "embeddingConfig": {"outputEmbeddingLength": self.dim}}

    def parse_answer(self, answer: dict[str, Any]) -> np.ndarray:
        """The vector of a decoded Titan answer (an InvokeModel body or a batch ``modelOutput``).

        Raises:
            InvalidResponseError: no vector of ``dim`` finite floats in it.
        """
        return self._vector(answer.get("embedding"), answer)

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
        if text:
            return self.parse_answer(self._call(self.image_body(image, text=text)))
        # Every image's body is the same but for the image: the rest is serialised once.
        return self.parse_answer(self._call(self._frames.payload(self.dim, image.base64, lambda data: self._image_body(data, None))))

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
        return self.parse_answer(self._call(self.text_body(self.checked_text(text))))
