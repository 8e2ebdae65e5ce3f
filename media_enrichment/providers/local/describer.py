"""The local describer: metadata from the text an image shows and its measured looks.

``visual_properties`` measures named dominant colours (fixed HSV rules over ``COLOUR_NAMES``),
brightness, colourfulness, amount of detail, orientation and size; ``compose_metadata`` writes
title, description, keywords and tags from those and from the texts ``ocr.TextReader`` reads.
The words come from measurements, not from an understanding of the scene: it never names
objects.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PIL import Image

from media_enrichment.images import CLAUDE_LIMITS, ImageLimits, PreparedImage, decode_rgb
from media_enrichment.providers.base import Describer, Description
from media_enrichment.providers.local.ocr import TextReader
from media_enrichment.providers.local.pixels import hsv, thumbnail
from media_enrichment.schema import ImageMetadata

__all__ = [
    "COLOUR_NAMES",
    "LOCAL_DESCRIBER_MODEL_ID",
    "LOCAL_RULES_VERSION",
    "LocalDescriber",
    "compose_metadata",
    "visual_properties",
]

LOCAL_DESCRIBER_MODEL_ID = "local/rapidocr-visual-v1"
LOCAL_RULES_VERSION = "local-rules-1"

# Colour names in the order they are reported when fractions tie.
COLOUR_NAMES = (
    "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "black", "grey", "white",
)


def _colour_names(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Map every pixel to an index into ``COLOUR_NAMES`` with fixed HSV rules."""
    idx = np.full(hue.shape, COLOUR_NAMES.index("grey"), dtype=np.int8)

    def put(mask: np.ndarray, name: str) -> None:
        idx[mask] = COLOUR_NAMES.index(name)

    chroma = (sat >= 0.2) & (val >= 0.2) & (sat * val >= 0.08)
    h = hue
    put(chroma & ((h < 15) | (h >= 345)), "red")
    put(chroma & ((h < 15) | (h >= 345)) & (sat < 0.5) & (val > 0.7), "pink")
    put(chroma & (h >= 15) & (h < 42), "orange")
    put(chroma & (h >= 15) & (h < 42) & (val < 0.6), "brown")
    put(chroma & (h >= 42) & (h < 68), "yellow")
    put(chroma & (h >= 42) & (h < 68) & (val < 0.5), "brown")
    put(chroma & (h >= 68) & (h < 160), "green")
    put(chroma & (h >= 160) & (h < 195), "teal")
    put(chroma & (h >= 195) & (h < 255), "blue")
    put(chroma & (h >= 255) & (h < 290), "purple")
    put(chroma & (h >= 290) & (h < 345), "pink")
    put(chroma & (h >= 290) & (h < 345) & (val < 0.5), "purple")
    achromatic = ~chroma
    put(achromatic & (val >= 0.82), "white")
    put(achromatic & (val < 0.25), "black")
    put(val < 0.2, "black")
    return idx


def _oxford(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut or text[:limit]).rstrip() + "…"


def visual_properties(rgb: Image.Image) -> dict[str, Any]:
    """Measure the properties the rules write about.

    Args:
        rgb: the image.

    Returns:
        A dict with ``colours`` (list of ``(name, fraction)``, largest first, those covering
        at least 8%, at most three), ``brightness`` (dark | mid-tone | bright),
        ``colourfulness`` (muted | moderate | vivid), ``detail`` (low | moderate | high),
        ``orientation`` (landscape | portrait | square), ``size`` (small | medium | large)
        and ``width``/``height``.
    """
    width, height = rgb.size
    # Colours are counted on sampled (not averaged) pixels: averaging would invent pink
    # where white text meets red.
    scale = min(1.0, 128 / max(width, height))
    sampled = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.NEAREST)
    hue, sat, val = hsv(sampled)
    counts = np.bincount(_colour_names(hue, sat, val).ravel(), minlength=len(COLOUR_NAMES))
    small = thumbnail(rgb, 96)
    fractions = counts / counts.sum()
    order = sorted(range(len(COLOUR_NAMES)), key=lambda i: (-fractions[i], i))
    colours = [(COLOUR_NAMES[i], float(fractions[i])) for i in order if fractions[i] >= 0.08][:3]
    if not colours:
        colours = [(COLOUR_NAMES[order[0]], float(fractions[order[0]]))]

    luma = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
    mean_luma = float(luma.mean())
    brightness = "dark" if mean_luma < 0.3 else "bright" if mean_luma > 0.68 else "mid-tone"
    chroma = float((sat * val).mean())
    colourfulness = "muted" if chroma < 0.12 else "vivid" if chroma > 0.4 else "moderate"
    edges = np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()
    detail = "low" if edges < 0.02 else "high" if edges > 0.06 else "moderate"
    ratio = width / height
    orientation = "landscape" if ratio > 1.1 else "portrait" if ratio < 0.9 else "square"
    pixels = width * height
    size = "small" if pixels < 300_000 else "large" if pixels >= 1_000_000 else "medium"
    return {
        "colours": colours,
        "brightness": brightness,
        "colourfulness": colourfulness,
        "detail": detail,
        "orientation": orientation,
        "size": size,
        "width": width,
        "height": height,
    }


def compose_metadata(props: dict[str, Any], texts: list[tuple[str, float, float]]) -> ImageMetadata:
    """Title, description, keywords, tags and OCR texts from ``visual_properties`` and read texts."""
    names = [name for name, _ in props["colours"]]
    ocr_texts = [text for text, _, _ in texts]
    title_colours = _oxford(names[:2])
    title = f"{title_colours[:1].upper()}{title_colours[1:]} {props['orientation']} image"
    if ocr_texts:
        # The biggest lines first would reorder a sign; keep reading order, but lead with
        # lines at least half as tall as the tallest one (the headline).
        tallest = max(height for _, _, height in texts)
        headline = " ".join(text for text, _, height in texts if height >= tallest * 0.5)
        title += f' with text "{_shorten(headline, 60)}"'

    share = [f"{name} ({round(fraction * 100)}%)" for name, fraction in props["colours"]]
    sentences = [
        f"A {props['size']} {props['orientation']} image ({props['width']}x{props['height']} as analysed) "
        f"dominated by {_oxford(share)}.",
        f"It is {props['brightness']} overall, {props['colourfulness']} in colour, with {props['detail']} detail.",
    ]
    if ocr_texts:
        quoted = ", ".join(f'"{_shorten(text, 80)}"' for text in ocr_texts[:6])
        sentences.append(f"Visible text reads {quoted}.")
    else:
        sentences.append("No legible text was found.")

    tags = [*names, props["orientation"], props["brightness"]]
    if props["colourfulness"] != "moderate":
        tags.append(props["colourfulness"])
    if props["detail"] != "moderate":
        tags.append(f"{props['detail']} detail")
    if ocr_texts:
        tags.append("text")
    words = []
    for text in ocr_texts:
        words += [w for w in re.findall(r"[\w%'&-]+", text) if len(w) >= 2]
    keywords = [
        *names,
        f"{names[0]} image",
        f"{props['orientation']} format",
        f"{props['size']} image",
        *tags[len(names) + 1 :],
    ]
    if ocr_texts:
        keywords += ["text", *words]
    return ImageMetadata(
        title=title,
        description=" ".join(sentences),
        keywords=keywords,
        tags=tags,
        ocr_texts=ocr_texts,
    )


class LocalDescriber(Describer):
    """Describes images offline: OCR for the visible text, fixed rules for everything else.

    The OCR engine is built lazily, once per instance, and its calls are serialised (see
    ``ocr.TextReader``); the colour and layout measurements run in parallel.
    """

    model_id = LOCAL_DESCRIBER_MODEL_ID
    prompt_version = LOCAL_RULES_VERSION
    image_limits: ImageLimits = CLAUDE_LIMITS

    def __init__(self, *, min_text_confidence: float = 0.5, ocr_max_side: int = 1280, ocr_threads: int | None = None):
        """Set up the describer (the OCR engine itself is built on first use).

        Args:
            min_text_confidence: recognised texts scored below this are dropped.
            ocr_max_side: images are scaled down to this long edge before OCR (speed).
            ocr_threads: ONNX Runtime intra-op threads for OCR; ``None`` lets it choose.
        """
        self.ocr = TextReader(min_confidence=min_text_confidence, max_side=ocr_max_side, threads=ocr_threads)

    def describe(self, image: PreparedImage) -> Description:
        """Describe one image from its text and measured visual properties.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            The metadata; token counts are zero (nothing is billed).

        Raises:
            ImageError: the bytes do not decode.
            FatalProviderError: the OCR models cannot be loaded.
        """
        rgb = decode_rgb(image)
        metadata = compose_metadata(visual_properties(rgb), self.ocr.read(rgb))
        return Description(metadata=metadata, input_tokens=0, output_tokens=0)

    def check_access(self) -> None:
        """Load the OCR models; raise ``FatalProviderError`` if they cannot be loaded."""
        self.ocr.engine()
