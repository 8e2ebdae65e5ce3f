"""Decode, normalise, resize and encode images for each model's limits.

One decode per image: ``prepare_images`` opens the bytes once, decodes them (large JPEGs at a
reduced DCT scale, via ``Image.draft``) and derives one encoding per model from that decode.
Every per-image problem (empty, not an image, truncated, decompression bomb, cannot fit) is raised
as ``ImageError``; nothing here touches Pillow's global settings, so it is safe in threads.

The modules: ``limits`` (what each model accepts), ``sniff`` (the format from the bytes),
``decode`` (open, decode, normalise; the source's facts), ``encode`` (resize and encode within a
model's limits) and ``prepare`` (from one decode, an image per model). This package exports the
names the rest of the library uses.
"""

from media_enrichment.images.decode import SourceFacts, decode_rgb, inspect_image
from media_enrichment.images.encode import PreparedImage
from media_enrichment.images.limits import CLAUDE_LIMITS, NOVA_EMBED_LIMITS, TITAN_LIMITS, ImageLimits, target_size
from media_enrichment.images.prepare import prepare_image, prepare_images
from media_enrichment.images.sniff import sniff_media_type

__all__ = [
    "CLAUDE_LIMITS",
    "NOVA_EMBED_LIMITS",
    "TITAN_LIMITS",
    "ImageLimits",
    "PreparedImage",
    "SourceFacts",
    "decode_rgb",
    "inspect_image",
    "prepare_image",
    "prepare_images",
    "sniff_media_type",
    "target_size",
]
