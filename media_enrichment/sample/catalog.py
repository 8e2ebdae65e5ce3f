"""The sample catalogue: which pictures, their near-duplicates, the files and the manifest.

``generate_sample_catalog`` draws about thirty originals in five themes (``painters``) in JPEG,
PNG and WebP, fabricates near-duplicates of some (a 10% crop, a resize to 60%, a JPEG re-encode
at quality 35, a small hue and brightness shift), writes them one folder per theme and lists
them in ``catalog.csv``. Every decision comes from one seed: the same seed gives byte-identical
files (with the same Pillow build).
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance

from media_enrichment.sample.painters import (
    POSTER_SCHEMES,
    PRODUCT_COLOURS,
    draw_abstract,
    draw_city,
    draw_landscape,
    draw_poster,
    draw_product,
    draw_sunset,
)

__all__ = ["MANIFEST_COLUMNS", "MANIFEST_NAME", "POSTER_TEXTS", "generate_sample_catalog"]

MANIFEST_NAME = "catalog.csv"
MANIFEST_COLUMNS = ("image_id", "path", "theme", "variant_of")

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}

# Texts carried by the posters; large and clear so that OCR can read them.
POSTER_TEXTS: tuple[tuple[str, ...], ...] = (
    ("SUMMER", "SALE 50%"),
    ("OPEN", "24 HOURS"),
    ("GRAND", "OPENING"),
    ("FRESH", "COFFEE"),
    ("NO PARKING",),
)


@dataclass(frozen=True)
class _Original:
    image_id: str
    theme: str
    draw: Callable[[random.Random, np.random.Generator, tuple[int, int]], Image.Image]
    size: tuple[int, int]
    fmt: str


@dataclass(frozen=True)
class _Variant:
    image_id: str
    of: str
    kind: str  # crop | resize | jpeg | shift
    fmt: str


# --------------------------------------------------------------------------------------------
# The catalogue plan

_LANDSCAPE_SIZES = ((640, 480), (800, 600), (960, 640), (1024, 768), (1200, 800))


def _plan(rng: random.Random) -> tuple[list[_Original], list[_Variant]]:
    originals: list[_Original] = []

    def add(theme: str, prefix: str, count: int, draw, formats: tuple[str, ...], sizes=_LANDSCAPE_SIZES) -> None:
        for i in range(count):
            originals.append(_Original(f"{prefix}-{i + 1:02d}", theme, draw, rng.choice(sizes), formats[i % len(formats)]))

    add("landscape", "sunset", 4, draw_sunset, ("JPEG", "WEBP", "JPEG", "PNG"))
    add("landscape", "hills", 3, draw_landscape, ("JPEG", "PNG", "WEBP"))
    add("city", "city", 4, draw_city, ("JPEG", "WEBP", "PNG", "JPEG"), sizes=_LANDSCAPE_SIZES + ((600, 800),))
    for i, (colour, kind) in enumerate(zip(PRODUCT_COLOURS, ("mug", "bottle", "box", "ball"))):
        def product(r, n, s, colour=colour, kind=kind):
            return draw_product(r, n, s, colour, kind)
        size = ((720, 720), (600, 800), (800, 600), (640, 640))[i]
        originals.append(_Original(f"product-{i + 1:02d}", "product", product, size, ("PNG", "WEBP", "PNG", "JPEG")[i]))
    for i, lines in enumerate(POSTER_TEXTS):
        def poster(r, n, s, lines=lines, scheme=POSTER_SCHEMES[i]):
            return draw_poster(r, n, s, lines, scheme)
        size = ((800, 600), (600, 800), (1024, 768), (640, 480), (960, 640))[i]
        originals.append(_Original(f"poster-{i + 1:02d}", "poster", poster, size, ("PNG", "JPEG", "WEBP", "PNG", "JPEG")[i]))
    add("abstract", "abstract", 3, draw_abstract, ("PNG", "WEBP", "JPEG"))

    variants = [
        _Variant("sunset-01-crop", "sunset-01", "crop", "JPEG"),
        _Variant("sunset-02-jpeg35", "sunset-02", "jpeg", "JPEG"),
        _Variant("hills-01-small", "hills-01", "resize", "JPEG"),
        _Variant("city-01-shift", "city-01", "shift", "JPEG"),
        _Variant("city-03-crop", "city-03", "crop", "PNG"),
        _Variant("product-02-small", "product-02", "resize", "PNG"),
        _Variant("poster-01-jpeg35", "poster-01", "jpeg", "JPEG"),
        _Variant("poster-01-crop", "poster-01", "crop", "PNG"),
        _Variant("abstract-01-shift", "abstract-01", "shift", "WEBP"),
    ]
    return originals, variants


def _fabricate(image: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int | None]:
    """A near-duplicate of ``image``; returns it and a JPEG quality to force, if any."""
    width, height = image.size
    if kind == "crop":  # keep 90% of each side, at a random offset
        dx, dy = rng.randint(0, width // 10), rng.randint(0, height // 10)
        return image.crop((dx, dy, dx + width * 9 // 10, dy + height * 9 // 10)), None
    if kind == "resize":
        return image.resize((round(width * 0.6), round(height * 0.6)), Image.Resampling.LANCZOS), None
    if kind == "jpeg":
        return image, 35
    if kind == "shift":  # rotate hue by ~6 degrees, brighten by 8%
        h, s, v = image.convert("HSV").split()
        h = h.point(lambda value: (value + 4) % 256)
        shifted = Image.merge("HSV", (h, s, v)).convert("RGB")
        return ImageEnhance.Brightness(shifted).enhance(1.08), None
    raise ValueError(f"unknown variant kind {kind!r}")


def _encode(image: Image.Image, fmt: str, quality: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality or 88, optimize=False, progressive=False)
    elif fmt == "WEBP":
        image.save(buffer, "WEBP", quality=82, method=4)
    else:
        image.save(buffer, "PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def generate_sample_catalog(folder: Path, *, seed: int = 7) -> Path:
    """Draw the sample catalogue into ``folder`` and write its manifest.

    Images go to one sub-folder per theme; fabricated near-duplicates sit next to their
    originals. Existing files with the same names are overwritten; nothing else is touched.

    Args:
        folder: where to write (created if missing).
        seed: the seed every drawing decision comes from; the same seed gives the same bytes.

    Returns:
        The path of the manifest ``catalog.csv``, whose columns are ``image_id, path, theme,
        variant_of`` (``path`` relative to the manifest's folder; ``variant_of`` empty, or the
        ``image_id`` a near-duplicate was fabricated from).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plan_rng = random.Random(seed)
    originals, variants = _plan(plan_rng)

    rows: list[dict[str, str]] = []
    drawn: dict[str, tuple[Image.Image, _Original]] = {}
    for index, original in enumerate(originals):
        rng = random.Random(seed * 1_000_003 + index)
        nrng = np.random.default_rng([seed, index])
        image = original.draw(rng, nrng, original.size)
        drawn[original.image_id] = (image, original)
        relative = f"{original.theme}/{original.image_id}.{_EXTENSIONS[original.fmt]}"
        _write(folder / relative, _encode(image, original.fmt))
        rows.append({"image_id": original.image_id, "path": relative, "theme": original.theme, "variant_of": ""})

    for index, variant in enumerate(variants):
        source, original = drawn[variant.of]
        rng = random.Random(seed * 2_000_003 + index)
        image, quality = _fabricate(source, variant.kind, rng)
        relative = f"{original.theme}/{variant.image_id}.{_EXTENSIONS[variant.fmt]}"
        _write(folder / relative, _encode(image, variant.fmt, quality))
        rows.append({"image_id": variant.image_id, "path": relative, "theme": original.theme, "variant_of": variant.of})

    manifest = folder / MANIFEST_NAME
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
