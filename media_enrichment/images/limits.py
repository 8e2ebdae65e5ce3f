"""What each model accepts, and the largest size within it.

An ``ImageLimits`` names a model's ceilings (long edge, pixels, encoded bytes), the encodings it
takes (preferred first) and how much smaller than its limits a JPEG may be decoded and sent
(``decode_slack``). ``target_size`` is the size an image is scaled down to for one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CLAUDE_LIMITS", "NOVA_EMBED_LIMITS", "TITAN_LIMITS", "ImageLimits", "target_size"]


@dataclass(frozen=True)
class ImageLimits:
    """What one model accepts. Images are scaled down and re-encoded to fit."""

    name: str
    max_long_edge: int  # pixels on the longer side
    max_pixels: int  # width * height
    max_bytes: int  # encoded size of the raw bytes (before any base64)
    media_types: tuple[str, ...]  # encodings the model accepts, preferred first
    #: A JPEG may be decoded (at a DCT scale) up to this fraction smaller per side than the
    #: limits allow and sent at that size, instead of decoded larger and resized: for models
    #: whose limit is a ceiling, not a resolution they need (0: always fill the limits).
    decode_slack: float = 0.0


# Claude on Bedrock: <= 5 MB of base64 per image (3,932,160 raw bytes), and the service scales
# anything above 1568 px on the long edge or ~1.15 MP down anyway, so we send no more than that.
CLAUDE_LIMITS = ImageLimits(
    name="claude",
    max_long_edge=1568,
    max_pixels=1_150_000,
    max_bytes=3_932_160,
    media_types=("image/jpeg", "image/png", "image/webp", "image/gif"),
)

# Titan Multimodal Embeddings G1: PNG or JPEG, at most 2048 x 2048. The 2048 px are a ceiling
# (an embedding model works at a far lower resolution), so a 12 MP JPEG is decoded once at half
# scale (2000 x 1500) for both models rather than in full for Titan's 2048 px.
TITAN_LIMITS = ImageLimits(
    name="titan",
    max_long_edge=2048,
    max_pixels=2048 * 2048,
    max_bytes=3_932_160,
    media_types=("image/jpeg", "image/png"),
    decode_slack=0.25,
)

# Amazon Nova Multimodal Embeddings: PNG, JPEG, GIF or WebP (``image.format``), one image per
# request. Its schema gives no pixel limit; AWS documents 25 MB of inline (base64) payload and at
# most 8000 x 8000 px for Nova image inputs. The embedder works at a reduced resolution
# (``detailLevel`` STANDARD_IMAGE, the default), so, as for Titan, 2048 px on the long edge is
# our ceiling to save bandwidth, not a resolution the model needs.
NOVA_EMBED_LIMITS = ImageLimits(
    name="nova-embed",
    max_long_edge=2048,
    max_pixels=2048 * 2048,
    max_bytes=3_932_160,
    media_types=("image/jpeg", "image/png", "image/webp", "image/gif"),
    decode_slack=0.25,
)


def target_size(width: int, height: int, lim: ImageLimits) -> tuple[int, int]:
    """Largest size with the same aspect, long edge and pixel count within ``lim``, never up."""
    area_scale = math.sqrt(lim.max_pixels / (width * height))
    scale = min(1.0, lim.max_long_edge / max(width, height), area_scale)
    if scale >= 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))
