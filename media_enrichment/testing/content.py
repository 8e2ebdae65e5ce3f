"""What the test server reads from an image and answers about it, deterministically.

An image's bytes give its ``ImageFacts`` (hash, media type, size, dominant colour from a fixed
palette), decoded once and kept in a bounded ``FactsCache``. From the facts come plausible
metadata (``metadata_for``) and unit vectors (``image_vector``); a text's vector
(``text_vector``) follows the colour words it names, so "a red poster" lands near red images
for every embedding model the server fakes. Media types are sniffed from magic bytes here,
independently of the library's own sniffing.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import io
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from media_enrichment.testing.errors import validation

__all__ = [
    "FactsCache",
    "ImageFacts",
    "decode_base64",
    "decode_image",
    "image_size",
    "image_vector",
    "metadata_for",
    "sniff",
    "text_tokens",
    "text_vector",
    "unit",
]

#: Leading bytes of each media type the server recognises (WebP is checked apart: RIFF....WEBP).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

_PALETTE = {
    "red": (200, 30, 40), "orange": (240, 140, 30), "yellow": (240, 220, 50), "green": (50, 160, 60),
    "teal": (30, 150, 150), "blue": (40, 80, 200), "purple": (130, 50, 170), "pink": (240, 130, 180),
    "brown": (120, 75, 40), "black": (15, 15, 15), "grey": (128, 128, 128), "white": (245, 245, 245),
}  # fmt: skip
_PALETTE_NAMES = list(_PALETTE)
_PALETTE_RGB = np.array(list(_PALETTE.values()), dtype=np.float32)
_SUBJECTS = ["still life", "landscape", "street scene", "product shot", "interior", "pattern", "close-up", "poster"]
_MOODS = ["bright", "calm", "bold", "soft", "vivid", "muted", "warm", "cool"]


def sniff(data: bytes) -> str | None:
    """Media type from magic bytes (independent of the library's own sniffing)."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_base64(value: Any, where: str) -> bytes:
    """The bytes of a base64 field, or the service's 400 for a missing or invalid one."""
    if not isinstance(value, str) or not value:
        raise validation(f"{where}: Field required")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise validation(f"{where}: Invalid base64 data") from None


def decode_image(value: Any, where: str) -> tuple[bytes, str]:
    """The bytes of a base64 image field and their media type (sniffed from the bytes).

    Raises:
        ServiceError: 400 for a missing or invalid base64 field, or bytes that are no image.
    """
    data = decode_base64(value, where)
    media_type = sniff(data)
    if media_type is None:
        raise validation("Could not process image")
    return data, media_type


def text_tokens(text: str) -> int:
    """Tokens the server bills for a text (four characters a token)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


# ---------------------------------------------------------------------------------------------
# Image facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    media_type: str
    width: int
    height: int
    colour: str


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an image, or the service's "Could not process image"."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any decoder failure is the service's "could not process"
        raise validation("Could not process image") from None


def _dominant_colour(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (64, 64))
            small = img.convert("RGB").resize((24, 24))
    except Exception:  # noqa: BLE001
        raise validation("Could not process image") from None
    pixels = np.asarray(small, dtype=np.float32).reshape(-1, 3)
    distances = ((pixels[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2)
    votes = np.bincount(distances.argmin(axis=1), minlength=len(_PALETTE_NAMES))
    return _PALETTE_NAMES[int(votes.argmax())]


class FactsCache:
    """Bounded cache of decoded image facts, keyed by the bytes' hash. Thread-safe."""

    def __init__(self, size: int = 2048):
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[str, ImageFacts] = collections.OrderedDict()
        self._size = size

    def facts_for(self, data: bytes, media_type: str, *, size: tuple[int, int] | None = None) -> ImageFacts:
        """The facts of an image, decoded on first sight (``size`` when already known)."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            facts = self._items.get(digest)
            if facts is not None:
                self._items.move_to_end(digest)
                return facts
        width, height = size or image_size(data)
        facts = ImageFacts(digest, media_type, width, height, _dominant_colour(data))
        with self._lock:
            self._items[digest] = facts
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return facts


# ---------------------------------------------------------------------------------------------
# Deterministic answers
# ---------------------------------------------------------------------------------------------


def _seeded_unit(seed_text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to unit L2 norm (a zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def image_vector(facts: ImageFacts, dim: int) -> np.ndarray:
    """Unit vector for an image: its colour's direction plus a component seeded by its hash."""
    return unit(0.8 * _seeded_unit(f"colour:{facts.colour}", dim) + 0.6 * _seeded_unit(f"image:{facts.sha256}", dim))


def text_vector(text: str, dim: int) -> np.ndarray:
    """Unit vector for a text: colour words it names, plus a component seeded by the text."""
    words = re.findall(r"[a-z]+", text.lower())
    colours = [w for w in words if w in _PALETTE] + ["grey" for w in words if w == "gray"]
    own = _seeded_unit("text:" + " ".join(words), dim)
    if not colours:
        return own
    colour = unit(sum(_seeded_unit(f"colour:{c}", dim) for c in colours))
    return unit(0.8 * colour + 0.6 * own)


def metadata_for(facts: ImageFacts) -> dict[str, Any]:
    """Plausible, deterministic metadata for an image."""
    h = bytes.fromhex(facts.sha256)
    subject = _SUBJECTS[h[0] % len(_SUBJECTS)]
    mood = _MOODS[h[1] % len(_MOODS)]
    orientation = "landscape" if facts.width > facts.height else "portrait" if facts.height > facts.width else "square"
    title = f"{mood.capitalize()} {facts.colour} {subject}"
    description = (
        f"A {mood} {orientation}-format {subject} dominated by {facts.colour} tones. "
        f"The image is {facts.width} by {facts.height} pixels."
    )
    return {
        "title": title,
        "description": description,
        "keywords": [facts.colour, subject, f"{facts.colour} {subject}", mood, orientation],
        "tags": [subject.split()[0], facts.colour, orientation],
        "ocr_texts": [f"REF {facts.sha256[:6].upper()}"] if h[2] % 4 == 0 else [],
    }
