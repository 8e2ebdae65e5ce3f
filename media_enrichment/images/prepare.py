"""Preparing an image for every model it goes to, from one decode.

``prepare_images`` opens and decodes the bytes once (``decode``), at the smallest JPEG DCT scale
that still covers the largest target (``limits``), and derives one encoding per model from that
decode (``encode``), each smaller target resized from the smallest image already made that
covers it. A source that already fits a model is passed through as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from media_enrichment.images.decode import (
    MAX_SOURCE_PIXELS,
    MAX_SOURCE_SIDE,
    ORIENTATION,
    SourceFacts,
    load_first_frame,
    normalise,
    open_source,
    orientation_of,
    with_orientation,
)
from media_enrichment.images.encode import PreparedImage, encode_to_fit, photo_like, pick_media_type, resize
from media_enrichment.images.limits import ImageLimits, target_size
from media_enrichment.images.pngwalk import walk_png
from media_enrichment.images.sniff import is_lossless

__all__ = ["prepare_image", "prepare_images"]


def prepare_images(
    data: bytes,
    limits: Sequence[ImageLimits],
    *,
    max_source_pixels: int = MAX_SOURCE_PIXELS,
    max_side: int = MAX_SOURCE_SIDE,
    content_sha256: str | None = None,
) -> tuple[SourceFacts, list[PreparedImage]]:
    """Decode an image once and encode it for each model's limits.

    EXIF orientation is applied; CMYK, palette, grey, 16-bit and float images become 8-bit
    L/RGB(A); animations give their first frame. Images are scaled down (never up) with
    Lanczos to fit ``max_long_edge`` and ``max_pixels``. A source that already fits (size,
    bytes, accepted type, upright, 8-bit, not animated) is passed through unchanged. Otherwise
    lossless sources with few pixels become PNG (alpha kept), everything else JPEG (alpha on
    white, quality 88), lowered in quality and then size until ``max_bytes`` is met.

    Args:
        data: the original file's bytes.
        limits: one entry per model; each must accept JPEG, PNG or WebP.
        max_source_pixels: refuse images with more pixels (decompression bombs).
        max_side: refuse images with a longer side.
        content_sha256: the bytes' SHA-256 when the caller has it already (the plan hashed
            them): not computed again.

    Returns:
        The source's facts and one prepared image per ``limits`` entry, in order.

    Raises:
        ImageError: the image is empty, not an image, corrupt, truncated, too large, or cannot
            be encoded within a model's limits.
    """
    im, facts = open_source(data, max_source_pixels, max_side, content_sha256=content_sha256)
    with im:
        # Targets in stored orientation (the fit does not depend on it); JPEGs are decoded at
        # the smallest DCT scale that still covers the largest of them (less each model's
        # decode slack, in which case that model gets the decoded size as it is).
        stored = [target_size(facts.width, facts.height, lim) for lim in limits]
        undecoded = _passed_through_undecoded(data, im, facts, stored, limits)
        if undecoded is not None:
            return facts, undecoded
        need = [
            (math.ceil(w * (1 - lim.decode_slack)), math.ceil(h * (1 - lim.decode_slack)))
            for (w, h), lim in zip(stored, limits)
        ]
        box = (max(n[0] for n in need), max(n[1] for n in need)) if need else (1, 1)
        animated = load_first_frame(im, box, facts.media_type)
        decoded = im.size
        stored = [
            target_size(*decoded, lim) if (decoded[0] < w or decoded[1] < h) else (w, h)
            for (w, h), lim in zip(stored, limits)
        ]
        orientation = orientation_of(im)
        facts = with_orientation(facts, orientation)
        passthrough_ok = orientation == 1 and not animated and _plain(im, facts)
        lossless = is_lossless(data, facts.media_type)

        # Largest target first, so each smaller one is resized from the smallest image already
        # made that covers it (a 3 MP Titan image, not the 12 MP decode, feeds Claude's 1.15 MP).
        order = sorted(range(len(limits)), key=lambda i: -stored[i][0] * stored[i][1])
        made: list[Image.Image] = []  # normalised and resized, in stored orientation
        prepared: list[PreparedImage | None] = [None] * len(limits)
        for i in order:
            lim, size = limits[i], stored[i]
            unscaled = size == (facts.width, facts.height)
            if passthrough_ok and unscaled and _fits(facts, lossless, lim):
                prepared[i] = PreparedImage(data, facts.media_type, *size)
                continue
            if not made:
                made.append(normalise(im))
            out = min(
                (m for m in made if m.width >= size[0] and m.height >= size[1]),
                key=lambda m: m.width * m.height,
            )
            if out.size != size:
                out = resize(out, size)
                made.append(out)
            if orientation in ORIENTATION:
                out = out.transpose(ORIENTATION[orientation])
            prepared[i] = encode_to_fit(out, pick_media_type(lossless, size, lim), lim)
    return facts, [p for p in prepared if p is not None]


def prepare_image(
    data: bytes,
    limits: ImageLimits,
    *,
    max_source_pixels: int = MAX_SOURCE_PIXELS,
    max_side: int = MAX_SOURCE_SIDE,
) -> PreparedImage:
    """Prepare an image for one model (see ``prepare_images``).

    Args:
        data: the original file's bytes.
        limits: the model's limits.
        max_source_pixels: refuse images with more pixels (decompression bombs).
        max_side: refuse images with a longer side.

    Returns:
        The prepared image.

    Raises:
        ImageError: as ``prepare_images``.
    """
    return prepare_images(
        data, [limits], max_source_pixels=max_source_pixels, max_side=max_side
    )[1][0]


def _passed_through_undecoded(
    data: bytes, im: Image.Image, facts: SourceFacts, stored: list[tuple[int, int]], limits: Sequence[ImageLimits]
) -> list[PreparedImage] | None:
    """A PNG that every model takes as it is, checked by its chunks instead of a decode
    (``pngwalk``); None when the image needs the decode path (any doubt: an eXIf orientation, an
    animation, a bit depth other than 8, a chunk that does not check out, a model's limit)."""
    if facts.media_type != "image/png" or not _plain(im, facts):
        return None
    if any(size != (facts.width, facts.height) or not _fits(facts, True, lim) for size, lim in zip(stored, limits)):
        return None
    walk = walk_png(data)
    if not walk.intact or walk.exif or walk.animated or walk.bit_depth != 8:
        return None
    image = PreparedImage(data, facts.media_type, facts.width, facts.height)
    return [image] * len(limits)  # one object: its base64 is computed once for every model


def _plain(im: Image.Image, facts: SourceFacts) -> bool:
    """Whether the decoded source is plain 8-bit in a format models take (pass-through)."""
    modes = ("RGB", "L") if facts.media_type == "image/jpeg" else ("RGB", "RGBA", "L", "LA", "P")
    return (
        facts.media_type in ("image/jpeg", "image/png", "image/webp", "image/gif")
        and im.mode in modes
    )


def _fits(facts: SourceFacts, lossless: bool, lim: ImageLimits) -> bool:
    """Whether the original bytes are acceptable as they are (a lossless photo is not)."""
    photo = lossless and photo_like(facts.size_bytes, facts.width, facts.height)
    return (
        facts.media_type in lim.media_types
        and facts.size_bytes <= lim.max_bytes
        and not (photo and "image/jpeg" in lim.media_types)
    )
