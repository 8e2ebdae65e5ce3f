"""Opening, decoding and normalising an image, and the facts of the original file.

The header is read first (``open_source``: media type from the bytes, size checks against
decompression bombs) and the first frame decoded once (``load_first_frame``: JPEGs at the
smallest DCT scale that still covers what is needed, via ``Image.draft``). EXIF orientation is
read, not applied, until the image is encoded. ``normalise`` brings any decoded mode to 8-bit
``L``, ``RGB`` or ``RGBA``. Every problem is raised as ``ImageError``; nothing here touches
Pillow's global settings, so it is safe in threads.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from media_enrichment.errors import ImageError
from media_enrichment.images.sniff import (
    describe_content,
    sniff_media_type,
    unsupported_image_format,
)

if TYPE_CHECKING:
    from media_enrichment.images.encode import PreparedImage

__all__ = [
    "MAX_SOURCE_PIXELS",
    "MAX_SOURCE_SIDE",
    "ORIENTATION",
    "SourceFacts",
    "decode_rgb",
    "flatten",
    "inspect_image",
    "load_first_frame",
    "normalise",
    "open_source",
    "orientation_of",
    "with_orientation",
]


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
_PIL_FORMAT = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}
ORIENTATION = {  # EXIF orientation -> transpose, as in ImageOps.exif_transpose
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
    im, facts = open_source(data, max_source_pixels, max_side)
    with im:
        load_first_frame(im, (1, 1), facts.media_type)
        return with_orientation(facts, orientation_of(im))


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
            return flatten(normalise(im)).convert("RGB")
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ImageError(f"prepared {image.media_type} image does not decode: {_reason(exc)}") from exc


#: A bytes literal in a decoder's message (Pillow names chunks: ``broken PNG file (chunk b'...')``).
_BYTES_REPR = re.compile(r"""(?<!\w)b(['"]).*?(?<!\\)\1""")


def _reason(exc: BaseException) -> str:
    """A decoder's message without any of the file's bytes in it, and short."""
    text = _BYTES_REPR.sub("<bytes>", str(exc) or type(exc).__name__)
    return text if len(text) <= 300 else text[:300] + "..."


def open_source(
    data: bytes, max_pixels: int, max_side: int, *, content_sha256: str | None = None
) -> tuple[Image.Image, SourceFacts]:
    """Open (header only) and check size; facts carry the stored, not yet oriented, size (and
    ``content_sha256``, or the bytes' SHA-256 when it is not given)."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    media_type = sniff_media_type(data)
    if media_type is None:
        # What the file seems to be and its size: never its bytes (they may be a secret).
        kind = unsupported_image_format(data)
        if kind:
            raise ImageError(f"unsupported image format ({kind}, {len(data):,} bytes)")
        raise ImageError(f"not an image ({describe_content(data)}, {len(data):,} bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ImageError(f"corrupt {media_type} header: {_reason(exc)}") from exc
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
    digest = content_sha256 or hashlib.sha256(data).hexdigest()
    return im, SourceFacts(digest, media_type, w, h, len(data))


def load_first_frame(im: Image.Image, box: tuple[int, int], media_type: str) -> bool:
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
        raise ImageError(f"corrupt or truncated {media_type}: {_reason(exc)}") from exc


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation (1 to 8) of an opened image; 1 when absent or unreadable."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:  # unreadable EXIF is not worth refusing the image for
        return 1
    return value if value in ORIENTATION else 1


def with_orientation(facts: SourceFacts, orientation: int) -> SourceFacts:
    """The facts as displayed: width and height swapped for a quarter-turn orientation."""
    if orientation in (5, 6, 7, 8):
        return SourceFacts(
            facts.content_sha256, facts.media_type, facts.height, facts.width, facts.size_bytes
        )
    return facts



def normalise(im: Image.Image) -> Image.Image:
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


def flatten(im: Image.Image) -> Image.Image:
    """Composite alpha on white; other images are returned as they are."""
    if im.mode != "RGBA":
        return im
    white = Image.new("RGB", im.size, (255, 255, 255))
    white.paste(im, mask=im.getchannel("A"))
    return white

