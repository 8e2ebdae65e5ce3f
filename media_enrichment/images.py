"""Decode, normalise, resize and encode images for each model's limits.

One decode per image: ``prepare_images`` opens the bytes once, decodes them (large JPEGs at a
reduced DCT scale, via ``Image.draft``) and derives one encoding per model from that decode.
Every per-image problem (empty, not an image, truncated, decompression bomb, cannot fit) is raised
as ``ImageError``; nothing here touches Pillow's global settings, so it is safe in threads.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from media_enrichment.errors import ImageError


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


#: Sources with more pixels are refused as decompression bombs. Pillow itself refuses more than
#: 2 * Image.MAX_IMAGE_PIXELS (~179 MP) at open, whatever this is set to.
MAX_SOURCE_PIXELS = 90_000_000
#: Sources with a longer side are refused (bounds degenerate strips).
MAX_SOURCE_SIDE = 32_768
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

_PIL_FORMAT = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}
_ORIENTATION = {  # EXIF orientation -> transpose, as in ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What Pillow raises on malformed input, beyond OSError (truncated files, decoder errors).
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
    struct.error, zlib.error, MemoryError,
)  # fmt: skip


def sniff_media_type(data: bytes) -> str | None:
    """Detect an image's media type from its magic bytes (never from a file name).

    Args:
        data: the file's bytes (the first 32 are enough).

    Returns:
        ``image/jpeg``, ``image/png``, ``image/gif``, ``image/webp``, ``image/tiff`` or
        ``image/bmp``; ``None`` for anything else.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    # "BM" alone is too weak (text can start with it): also require a known DIB header size.
    if data[:2] == b"BM" and len(data) >= 18:
        if struct.unpack_from("<I", data, 14)[0] in (12, 16, 40, 52, 56, 64, 108, 124):
            return "image/bmp"
    return None


def inspect_image(
    data: bytes,
    *,
    max_source_pixels: int = MAX_SOURCE_PIXELS,
    max_side: int = MAX_SOURCE_SIDE,
) -> SourceFacts:
    """Read an image's facts and check that it decodes.

    The decode check is cheap for JPEG (1/8 scale: all entropy data is read, so truncation is
    found) and a full decode for other formats. Use ``prepare_images`` when the image is also
    to be encoded: it returns the same facts from its single decode.

    Args:
        data: the original file's bytes.
        max_source_pixels: refuse images with more pixels (decompression bombs).
        max_side: refuse images with a longer side.

    Returns:
        The sha256, media type (from the bytes), displayed width/height and size of the file.

    Raises:
        ImageError: empty, not an image, corrupt or truncated, or too large.
    """
    im, facts = _open(data, max_source_pixels, max_side)
    with im:
        _load(im, (1, 1), facts.media_type)
        return _with_orientation(facts, _orientation(im))


def prepare_images(
    data: bytes,
    limits: Sequence[ImageLimits],
    *,
    max_source_pixels: int = MAX_SOURCE_PIXELS,
    max_side: int = MAX_SOURCE_SIDE,
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

    Returns:
        The source's facts and one prepared image per ``limits`` entry, in order.

    Raises:
        ImageError: the image is empty, not an image, corrupt, truncated, too large, or cannot
            be encoded within a model's limits.
    """
    im, facts = _open(data, max_source_pixels, max_side)
    with im:
        # Targets in stored orientation (the fit does not depend on it); JPEGs are decoded at
        # the smallest DCT scale that still covers the largest of them (less each model's
        # decode slack, in which case that model gets the decoded size as it is).
        stored = [target_size(facts.width, facts.height, lim) for lim in limits]
        need = [
            (math.ceil(w * (1 - lim.decode_slack)), math.ceil(h * (1 - lim.decode_slack)))
            for (w, h), lim in zip(stored, limits)
        ]
        box = (max(n[0] for n in need), max(n[1] for n in need)) if need else (1, 1)
        animated = _load(im, box, facts.media_type)
        decoded = im.size
        stored = [
            target_size(*decoded, lim) if (decoded[0] < w or decoded[1] < h) else (w, h)
            for (w, h), lim in zip(stored, limits)
        ]
        orientation = _orientation(im)
        facts = _with_orientation(facts, orientation)
        passthrough_ok = orientation == 1 and not animated and _plain(im, facts)
        lossless = _is_lossless(data, facts.media_type)

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
                made.append(_normalise(im))
            out = min(
                (m for m in made if m.width >= size[0] and m.height >= size[1]),
                key=lambda m: m.width * m.height,
            )
            if out.size != size:
                out = _resize(out, size)
                made.append(out)
            if orientation in _ORIENTATION:
                out = out.transpose(_ORIENTATION[orientation])
            prepared[i] = _encode_to_fit(out, _pick_media_type(lossless, size, lim), lim)
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


def decode_rgb(image: PreparedImage) -> Image.Image:
    """Decode a prepared image to an 8-bit RGB Pillow image (alpha composited on white).

    Args:
        image: a prepared image.

    Returns:
        A loaded RGB image of ``image.width`` x ``image.height``.

    Raises:
        ImageError: the bytes do not decode.
    """
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            im.load()
            return _flatten(_normalise(im)).convert("RGB")
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ImageError(f"prepared {image.media_type} image does not decode: {exc}") from exc


# ---------------------------------------------------------------------------------------------


def _open(data: bytes, max_pixels: int, max_side: int) -> tuple[Image.Image, SourceFacts]:
    """Open (header only) and check size; facts carry the stored, not yet oriented, size."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    media_type = sniff_media_type(data)
    if media_type is None:
        hint = " (HEIC/AVIF/video)" if data[4:8] == b"ftyp" else ""
        raise ImageError(
            f"not an image or unsupported format{hint}: file starts with {data[:8]!r}"
        )
    try:
        im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ImageError(f"corrupt {media_type} header: {exc}") from exc
    w, h = im.size
    try:
        if w * h > max_pixels:
            raise ImageError(
                f"decompression bomb refused: {w}x{h} = {w * h} pixels exceeds {max_pixels}"
            )
        if max(w, h) > max_side:
            raise ImageError(f"image too large: {w}x{h}, a side exceeds {max_side} px")
        if w < 1 or h < 1:
            raise ImageError(f"image has no pixels: {w}x{h}")
    except ImageError:
        im.close()
        raise
    digest = hashlib.sha256(data).hexdigest()
    return im, SourceFacts(digest, media_type, w, h, len(data))


def _load(im: Image.Image, box: tuple[int, int], media_type: str) -> bool:
    """Decode the first frame, JPEGs at the smallest DCT scale still covering ``box``.

    Returns whether the file has more frames (animation, multi-page, MPO).
    """
    try:
        animated = bool(getattr(im, "is_animated", False))  # before load: it seeks
        if media_type == "image/jpeg":
            im.draft("RGB", box)
        im.load()
        return animated
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"corrupt or truncated {media_type}: {exc}") from exc


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:  # unreadable EXIF is not worth refusing the image for
        return 1
    return value if value in _ORIENTATION else 1


def _with_orientation(facts: SourceFacts, orientation: int) -> SourceFacts:
    if orientation in (5, 6, 7, 8):
        return SourceFacts(
            facts.content_sha256, facts.media_type, facts.height, facts.width, facts.size_bytes
        )
    return facts


def target_size(width: int, height: int, lim: ImageLimits) -> tuple[int, int]:
    """Largest size with the same aspect, long edge and pixel count within ``lim``, never up."""
    area_scale = math.sqrt(lim.max_pixels / (width * height))
    scale = min(1.0, lim.max_long_edge / max(width, height), area_scale)
    if scale >= 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def _resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale down to ``size``: LANCZOS for small steps, HAMMING from ``CHEAP_RESAMPLE_FROM``.

    Large factors are first reduced by an integer factor (box filter, ``reducing_gap``), which
    Pillow finds indistinguishable from a direct resample at a gap of 3.
    """
    ratio = max(im.width / size[0], im.height / size[1])
    resample = Image.Resampling.HAMMING if ratio >= CHEAP_RESAMPLE_FROM else Image.Resampling.LANCZOS
    return im.resize(size, resample, reducing_gap=3.0)


def _plain(im: Image.Image, facts: SourceFacts) -> bool:
    """Whether the decoded source is plain 8-bit in a format models take (pass-through)."""
    modes = ("RGB", "L") if facts.media_type == "image/jpeg" else ("RGB", "RGBA", "L", "LA", "P")
    return (
        facts.media_type in ("image/jpeg", "image/png", "image/webp", "image/gif")
        and im.mode in modes
    )


def _fits(facts: SourceFacts, lossless: bool, lim: ImageLimits) -> bool:
    """Whether the original bytes are acceptable as they are (a lossless photo is not)."""
    photo = lossless and _photo_like(facts.size_bytes, facts.width, facts.height)
    return (
        facts.media_type in lim.media_types
        and facts.size_bytes <= lim.max_bytes
        and not (photo and "image/jpeg" in lim.media_types)
    )


def _photo_like(n_bytes: int, width: int, height: int) -> bool:
    """A lossless encoding this large and dense holds a photo; JPEG suits it better."""
    return n_bytes > max(PNG_PHOTO_MIN_BYTES, width * height)


def _is_lossless(data: bytes, media_type: str) -> bool:
    if media_type == "image/webp":
        return data[12:16] == b"VP8L"
    return media_type in ("image/png", "image/gif", "image/bmp", "image/tiff")


def _normalise(im: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit ``L``, ``RGB`` or ``RGBA`` (alpha kept only if used)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im)), "L")
    if mode == "1":
        return im.convert("L")
    if mode in ("L", "RGB") and "transparency" not in im.info:
        return im
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or im.has_transparency_data:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            return rgba
        return rgba.convert("RGB")
    if mode == "P":
        palette_mode = im.palette.mode if im.palette else "RGB"
        return im.convert("L" if palette_mode == "L" else "RGB")
    return im.convert("RGB")  # CMYK (Adobe-inverted handled by Pillow), YCbCr, LAB, HSV, RGBX


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit int or float grey values to 0..255 (not clip them)."""
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        return (arr >> 8).astype(np.uint8)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return np.round(arr * 255.0).astype(np.uint8)
    if arr.dtype.kind in "iu" and lo >= 0 and hi <= 65535:  # Pillow's "I" from 16-bit files
        return (arr.astype(np.uint32) >> 8).astype(np.uint8)
    span = (hi - lo) or 1.0
    return np.round((arr.astype(np.float64) - lo) * (255.0 / span)).astype(np.uint8)


def _flatten(im: Image.Image) -> Image.Image:
    """Composite alpha on white; other images are returned as they are."""
    if im.mode != "RGBA":
        return im
    white = Image.new("RGB", im.size, (255, 255, 255))
    white.paste(im, mask=im.getchannel("A"))
    return white


def _pick_media_type(lossless: bool, size: tuple[int, int], lim: ImageLimits) -> str:
    small = size[0] * size[1] <= PNG_MAX_PIXELS
    order = ("image/png", "image/jpeg") if lossless and small else ("image/jpeg", "image/png")
    for media_type in (*order, "image/webp"):
        if media_type in lim.media_types:
            return media_type
    raise ValueError(f"limits {lim.name!r} accept none of JPEG, PNG, WebP: {lim.media_types}")


def _encode(im: Image.Image, media_type: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if media_type == "image/jpeg":
        _flatten(im).save(buf, "JPEG", quality=quality)
    elif media_type == "image/png":
        im.save(buf, "PNG", compress_level=6)
    else:
        im.save(buf, "WEBP", quality=quality, method=4)
    return buf.getvalue()


def _encode_to_fit(im: Image.Image, media_type: str, lim: ImageLimits) -> PreparedImage:
    """Encode; if over ``max_bytes`` lower the quality, switch PNG to JPEG, then shrink."""
    while True:
        if media_type == "image/png":
            data = _encode(im, media_type, 0)
            too_big = len(data) > lim.max_bytes
            photo = _photo_like(len(data), im.width, im.height)
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
        im = _resize(im, size)
