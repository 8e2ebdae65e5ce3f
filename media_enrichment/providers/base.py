"""The two small interfaces every provider implements.

A provider gets images already prepared for its limits (see ``images.prepare_image``) and
returns plain values; it raises only the errors of ``media_enrichment.errors``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from media_enrichment.images import ImageLimits, PreparedImage
from media_enrichment.schema import ImageMetadata


@dataclass(frozen=True)
class Description:
    """A describer's answer for one image, with the tokens it cost."""

    metadata: ImageMetadata
    input_tokens: int = 0
    output_tokens: int = 0


class Describer(ABC):
    """Image -> title, description, keywords, tags and visible text."""

    #: Model id stored on every row (``enrichment_model``); local ones say ``local``.
    model_id: str
    #: Version of the prompt (a hash of the template) or of the rules that wrote the text.
    prompt_version: str
    #: The limits images must be prepared to before ``describe`` sees them.
    image_limits: ImageLimits

    @abstractmethod
    def describe(self, image: PreparedImage) -> Description:
        """Describe one image.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            The validated metadata and token counts.
        """

    def check_access(self) -> None:
        """Raise ``FatalProviderError`` if no image could be described (no access, unknown model)."""

    @property
    def calls_in_flight(self) -> int:
        """Calls this provider can usefully have in flight at once in one process: 1 by default
        (it works one image at a time, e.g. on this machine's CPU); a remote model's window cap."""
        return 1


class Embedder(ABC):
    """Image or text -> one vector in a shared space."""

    #: Model id stored on every row (``embedding_model``).
    model_id: str
    #: Vector length.
    dim: int
    #: Every vector length this embedder can make (settings are validated against them).
    dims: tuple[int, ...] = ()
    #: The limits images must be prepared to before ``embed_image`` sees them.
    image_limits: ImageLimits

    @abstractmethod
    def embed_image(self, image: PreparedImage) -> np.ndarray:
        """Embed one image.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            A float32 vector of length ``dim``.
        """

    @abstractmethod
    def embed_text(self, text: str) -> np.ndarray:
        """Embed a text query into the same space as images.

        Args:
            text: the query.

        Returns:
            A float32 vector of length ``dim``.
        """

    def embed_query_image(self, image: PreparedImage) -> np.ndarray:
        """Embed an image used as a search query (stored images go through ``embed_image``).

        Embedders whose model optimises query vectors differently from stored ones override
        this; by default a query image is embedded like a stored one.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            A float32 vector of length ``dim``.
        """
        return self.embed_image(image)

    def check_access(self) -> None:
        """Raise ``FatalProviderError`` if no image could be embedded."""

    @property
    def calls_in_flight(self) -> int:
        """Calls this provider can usefully have in flight at once in one process: 1 by default
        (it works one image at a time, e.g. on this machine's CPU); a remote model's window cap."""
        return 1
