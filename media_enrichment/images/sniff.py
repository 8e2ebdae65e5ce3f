"""An image's format from its bytes, never from a file name."""

from __future__ import annotations

import struct

__all__ = ["is_lossless", "sniff_media_type"]


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


def is_lossless(data: bytes, media_type: str) -> bool:
    """Whether a file of ``media_type`` holds a lossless encoding (a WebP: only VP8L)."""
    if media_type == "image/webp":
        return data[12:16] == b"VP8L"
    return media_type in ("image/png", "image/gif", "image/bmp", "image/tiff")
