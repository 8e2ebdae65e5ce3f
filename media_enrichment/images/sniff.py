"""An image's format from its bytes, never from a file name."""

from __future__ import annotations

import struct

__all__ = ["describe_content", "is_lossless", "sniff_media_type", "unsupported_image_format"]


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
    if data[:2] == b"BM" and len(data) >= 18 and struct.unpack_from("<I", data, 14)[0] in (
        12, 16, 40, 52, 56, 64, 108, 124,
    ):
        return "image/bmp"
    return None


#: Image formats recognised but not supported, from their magic bytes.
_OTHER_IMAGES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (0, b"8BPS", "Photoshop PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"qoif", "QOI"),
    (0, b"\x76\x2f\x31\x01", "OpenEXR"),
)

#: Other files, from their magic bytes.
_OTHER_FILES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "PDF"),
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (257, b"ustar", "tar archive"),
    (0, b"\x7fELF", "ELF executable"),
    (0, b"MZ", "Windows executable"),
    (0, b"SQLite format 3\x00", "SQLite database"),
    (0, b"PAR1", "Parquet"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3 audio"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
)


def unsupported_image_format(data: bytes) -> str | None:
    """The name of an image format recognised from its bytes but not supported (HEIC, AVIF,
    JPEG 2000, SVG...), or None."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC/HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    for offset, magic, name in _OTHER_IMAGES:
        if data[offset : offset + len(magic)] == magic:
            return name
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def describe_content(data: bytes) -> str:
    """What a file that is not a supported image seems to be, for a message: a format's name
    ("PDF", "ZIP archive", "ISO media (MP4/MOV)"), "text", "HTML", "XML", "JSON" or "binary
    data". Never any of the file's bytes.

    Args:
        data: the file's bytes (the first few KiB are enough).

    Returns:
        A short name.
    """
    image = unsupported_image_format(data)
    if image:
        return image
    if data[4:8] == b"ftyp":
        return "ISO media (MP4/MOV)"
    for offset, magic, name in _OTHER_FILES:
        if data[offset : offset + len(magic)] == magic:
            return name
    head = data[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text (UTF-16)"
    if b"\x00" in head:
        return "binary data"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the 4096th byte
            return "binary data"
        text = head[: exc.start].decode("utf-8")
    stripped = text.lstrip("\ufeff \t\r\n").lower()
    if stripped.startswith(("<!doctype html", "<html")):
        return "HTML"
    if stripped.startswith("<"):
        return "XML"
    if stripped.startswith(("{", "[")):
        return "JSON"
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return "text" if printable >= 0.95 * max(1, len(text)) else "binary data"


def is_lossless(data: bytes, media_type: str) -> bool:
    """Whether a file of ``media_type`` holds a lossless encoding (a WebP: only VP8L)."""
    if media_type == "image/webp":
        return data[12:16] == b"VP8L"
    return media_type in ("image/png", "image/gif", "image/bmp", "image/tiff")
