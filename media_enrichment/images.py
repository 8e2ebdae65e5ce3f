"""Decode, normalise, resize and encode images for each model's limits.

(Skeleton: data types are final; the functions below are being implemented.)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageLimits:
    """What one model accepts. Images are scaled down and re-encoded to fit."""

    name: str
    max_long_edge: int  # pixels on the longer side
    max_pixels: int  # width * height
    max_bytes: int  # encoded size of the raw bytes (before any base64)
    media_types: tuple[str, ...]  # encodings the model accepts, preferred first


# Claude on Bedrock: <= 5 MB of base64 per image (3,932,160 raw bytes), and the service scales
# anything above 1568 px on the long edge or ~1.15 MP down anyway, so we send no more than that.
CLAUDE_LIMITS = ImageLimits(
    name="claude",
    max_long_edge=1568,
    max_pixels=1_150_000,
    max_bytes=3_932_160,
    media_types=("image/jpeg", "image/png", "image/webp", "image/gif"),
)

# Titan Multimodal Embeddings G1: PNG or JPEG, at most 2048 x 2048.
TITAN_LIMITS = ImageLimits(
    name="titan",
    max_long_edge=2048,
    max_pixels=2048 * 2048,
    max_bytes=3_932_160,
    media_types=("image/jpeg", "image/png"),
)


@dataclass(frozen=True)
class PreparedImage:
    """An image encoded for one model: the bytes, their true media type and size."""

    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class SourceFacts:
    """Facts about the original file, stored on its row."""

    content_sha256: str
    media_type: str
    width: int  # as displayed, after EXIF orientation
    height: int
    size_bytes: int
