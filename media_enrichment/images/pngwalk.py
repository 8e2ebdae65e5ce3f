"""A PNG's structure checked without decoding its pixels.

A PNG that already fits every model is sent as it is, so decoding it (inflating and unfiltering
every row: ~1.8 ms for a 256 x 256 image, most of the CPU the pipeline spends on such an image
outside botocore) would only prove that it decodes. ``walk_png`` proves what can be proved
cheaply (~0.03 ms): the signature, ``IHDR`` first, every chunk's CRC-32 (which catches a cut or
damaged file), at least one ``IDAT``, ``IEND`` last and nothing after it; and it reports what
would change how the image must be prepared (an ``eXIf`` chunk, whose orientation would have to
be applied; an ``acTL`` animation; a bit depth other than 8). What it cannot prove (a deflate
stream made invalid on purpose under valid CRCs) is refused by the model service with a
``ValidationException`` before the model reads a token, and it becomes a failure row.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["PngWalk", "walk_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = struct.Struct(">I4s")
_CRC = struct.Struct(">I")
#: More chunks than this is not a PNG worth the fast path (a file of many empty chunks).
_MAX_CHUNKS = 10_000


@dataclass(frozen=True)
class PngWalk:
    """What a PNG's chunks say, without its pixels."""

    intact: bool  # signature, IHDR first, every CRC, an IDAT, IEND last, nothing after
    problem: str | None = None  # why not intact (never the file's bytes)
    bit_depth: int = 0
    exif: bool = False  # an eXIf chunk: the orientation may not be upright
    animated: bool = False  # an acTL chunk (APNG)


def walk_png(data: bytes) -> PngWalk:
    """Walk a PNG's chunks, checking each CRC-32, without inflating any image data.

    Args:
        data: the file's bytes.

    Returns:
        The walk: ``intact`` False with a ``problem`` for any structural fault.
    """
    if not data.startswith(_SIGNATURE):
        return PngWalk(False, "no PNG signature")
    view = memoryview(data)
    pos, chunks, bit_depth = len(_SIGNATURE), 0, 0
    exif = animated = idat = False
    while pos < len(data):
        if pos + 12 > len(data) or chunks >= _MAX_CHUNKS:
            return PngWalk(False, "truncated chunk" if chunks < _MAX_CHUNKS else "too many chunks")
        length, kind = _CHUNK.unpack_from(data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return PngWalk(False, f"chunk {chunks + 1} cut short")
        if zlib.crc32(view[pos + 4 : end]) != _CRC.unpack_from(data, end)[0]:
            return PngWalk(False, f"CRC mismatch in chunk {chunks + 1}")
        if chunks == 0:
            if kind != b"IHDR" or length != 13:
                return PngWalk(False, "IHDR is not the first chunk")
            bit_depth = data[pos + 16]
        chunks += 1
        idat |= kind == b"IDAT"
        exif |= kind == b"eXIf"
        animated |= kind == b"acTL"
        pos = end + 4
        if kind == b"IEND":
            if pos != len(data):
                return PngWalk(False, f"{len(data) - pos} bytes after IEND")
            if not idat:
                return PngWalk(False, "no IDAT chunk")
            return PngWalk(True, None, bit_depth, exif, animated)
    return PngWalk(False, "no IEND chunk")
