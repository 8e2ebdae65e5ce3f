"""Scaling down and encoding an image for one model.

``resize`` scales down (never up) with LANCZOS for small steps and HAMMING for large ones;
``pick_media_type`` chooses PNG for lossless sources with few pixels and JPEG otherwise (WebP
only for a model that takes neither), and ``encode_to_fit`` lowers the JPEG quality, switches
PNG to JPEG, then shrinks until the model's byte limit is met.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass

from PIL import Image

from media_enrichment.errors import ImageError
from media_enrichment.images.decode import flatten
from media_enrichment.images.limits import ImageLimits

__all__ = [
    "CHEAP_RESAMPLE_FROM",
    "JPEG_QUALITY",
    "PNG_MAX_PIXELS",
    "PreparedImage",
    "encode_to_fit",
    "photo_like",
    "pick_media_type",
    "resize",
]


@dataclass(frozen=True)
class PreparedImage:
    """An image encoded for one model: the bytes, their true media type and size."""

    data: bytes
    media_type: str
    width: int
    height: int

    @functools.cached_property
    def base64(self) -> Base64Text:
        """The bytes in base64 (computed once: one image may go to several models)."""
        return Base64Text(base64.b64encode(self.data).decode("ascii"))


class Base64Text(str):
    """A base64 string (only ``A-Z a-z 0-9 + / =``, which JSON never escapes): a request body
    holding one can be serialised around it instead of through it (``json_bytes``)."""

    __slots__ = ()


JPEG_QUALITY = 88
#: Downscaling by at least this factor (what the DCT-scaled decode leaves) uses a HAMMING filter:
#: antialiased, a third of LANCZOS's taps (a 12 MP JPEG for Claude: 60 ms instead of 91 ms), and
#: within 1 dB of LANCZOS in PSNR against a full-resolution LANCZOS resize (benchmarks/, comparison
#: 3). Smaller steps, where LANCZOS is cheap and keeps edges sharp, use LANCZOS.
CHEAP_RESAMPLE_FROM = 1.5
#: Lower qualities tried, in order, when a JPEG exceeds ``max_bytes``; then the image shrinks.
_FALLBACK_QUALITIES = (80, 70, 60)
#: Lossless sources up to this many output pixels are encoded as PNG (graphics, text)...
PNG_MAX_PIXELS = 1_200_000
#: ...unless the PNG is big and costs more than 1 byte per pixel (a photo saved losslessly).
PNG_PHOTO_MIN_BYTES = 256_000


def resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale down to ``size``: LANCZOS for small steps, HAMMING from ``CHEAP_RESAMPLE_FROM``.

    Large factors are first reduced by an integer factor (box filter, ``reducing_gap``), which
    Pillow finds indistinguishable from a direct resample at a gap of 3.
    """
    ratio = max(im.width / size[0], im.height / size[1])
    resample = Image.Resampling.HAMMING if ratio >= CHEAP_RESAMPLE_FROM else Image.Resampling.LANCZOS
    return im.resize(size, resample, reducing_gap=3.0)


def photo_like(n_bytes: int, width: int, height: int) -> bool:
    """A lossless encoding this large and dense holds a photo; JPEG suits it better."""
    return n_bytes > max(PNG_PHOTO_MIN_BYTES, width * height)


def pick_media_type(lossless: bool, size: tuple[int, int], lim: ImageLimits) -> str:
    """The encoding to try first for an image of ``size``: PNG for small lossless sources."""
    small = size[0] * size[1] <= PNG_MAX_PIXELS
    order = ("image/png", "image/jpeg") if lossless and small else ("image/jpeg", "image/png")
    for media_type in (*order, "image/webp"):
        if media_type in lim.media_types:
            return media_type
    raise ValueError(f"limits {lim.name!r} accept none of JPEG, PNG, WebP: {lim.media_types}")


def _encode(im: Image.Image, media_type: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if media_type == "image/jpeg":
        flatten(im).save(buf, "JPEG", quality=quality)
    elif media_type == "image/png":
        im.save(buf, "PNG", compress_level=6)
    else:
        im.save(buf, "WEBP", quality=quality, method=4)
    return buf.getvalue()


def encode_to_fit(im: Image.Image, media_type: str, lim: ImageLimits) -> PreparedImage:
    """Encode; if over ``max_bytes`` lower the quality, switch PNG to JPEG, then shrink."""
    while True:
        if media_type == "image/png":
            data = _encode(im, media_type, 0)
            too_big = len(data) > lim.max_bytes
            photo = photo_like(len(data), im.width, im.height)
            if not too_big and not (photo and "image/jpeg" in lim.media_types):
                return PreparedImage(data, media_type, im.width, im.height)
            if "image/jpeg" in lim.media_types:
                media_type = "image/jpeg"
                continue
        else:
            for quality in (JPEG_QUALITY, *_FALLBACK_QUALITIES):
                data = _encode(im, media_type, quality)
                if len(data) <= lim.max_bytes:
                    return PreparedImage(data, media_type, im.width, im.height)
        if min(im.size) < 32:
            raise ImageError(f"cannot encode within {lim.max_bytes} bytes for {lim.name}")
        size = (max(1, im.width * 3 // 4), max(1, im.height * 3 // 4))
        im = resize(im, size)
