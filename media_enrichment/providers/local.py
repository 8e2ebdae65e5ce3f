"""Offline, deterministic providers: real work without any network or paid model.

* ``LocalDescriber`` reads the text in an image with RapidOCR (PP-OCR models bundled in the
  ``rapidocr-onnxruntime`` wheel) and measures visual properties (named dominant colours,
  brightness, colourfulness, detail, orientation, size), then writes title, description,
  keywords and tags from fixed rules.
* ``LocalEmbedder`` turns an image into a content-based vector (layout, colour and edge
  statistics, randomly projected), so near-duplicates land close together; a text query is
  mapped into the same space through the colours it names.

Both say ``local`` in their model ids; their output is never presented as Bedrock output.
Both are safe to call from several threads.
"""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from media_enrichment.errors import FatalProviderError, ImageError
from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, ImageLimits, PreparedImage
from media_enrichment.providers.base import Describer, Description, Embedder
from media_enrichment.schema import ImageMetadata

try:  # the shared decoder (EXIF orientation, alpha on white); a plain decode until it exists
    from media_enrichment.images import decode_rgb as _shared_decode_rgb
except ImportError:  # pragma: no cover - depends on the state of images.py
    _shared_decode_rgb = None

LOCAL_DESCRIBER_MODEL_ID = "local/rapidocr-visual-v1"
LOCAL_RULES_VERSION = "local-rules-1"
LOCAL_EMBEDDING_DIMS = (256, 384, 1024)


def _decode_rgb(image: PreparedImage) -> Image.Image:
    """Decode a prepared image to RGB; raise ``ImageError`` if the bytes do not decode."""
    if _shared_decode_rgb is not None:
        return _shared_decode_rgb(image)
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"prepared {image.media_type} image does not decode: {exc}") from exc


def _thumbnail(rgb: Image.Image, long_edge: int) -> Image.Image:
    """A box-filtered (area-averaged) copy whose longer side is at most ``long_edge``."""
    width, height = rgb.size
    scale = long_edge / max(width, height)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return rgb.resize(size, Image.Resampling.BOX)


def _hsv(rgb: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], as float32 arrays."""
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.float32)
    return hsv[..., 0] * (360.0 / 256.0), hsv[..., 1] / 255.0, hsv[..., 2] / 255.0


# ============================================================================================
# Describer

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


class LocalDescriber(Describer):
    """Describes images offline: OCR for the visible text, fixed rules for everything else.

    Text is read with RapidOCR (PP-OCRv4 detection and recognition, ONNX Runtime on CPU); the
    engine is built lazily, once per instance. Its pipeline keeps per-call state on the engine
    object, so calls into it are serialised with a lock (ONNX Runtime itself uses several
    threads per call); the colour and layout measurements run in parallel.

    The words it writes come from measurements, not from an understanding of the scene: it
    names colours, brightness, colourfulness, amount of detail, orientation and size, and
    quotes the text it can read. It never names objects.
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
        self.min_text_confidence = min_text_confidence
        self.ocr_max_side = ocr_max_side
        self.ocr_threads = ocr_threads
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._ocr_lock = threading.Lock()

    # -- OCR ---------------------------------------------------------------------------------

    def _ocr_engine(self) -> Any:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    try:
                        from rapidocr_onnxruntime import RapidOCR
                    except ImportError as exc:  # pragma: no cover - install problem
                        raise FatalProviderError(f"the local describer needs rapidocr-onnxruntime: {exc}") from exc
                    kwargs: dict[str, Any] = {"print_verbose": False}
                    if self.ocr_threads:
                        kwargs.update(intra_op_num_threads=self.ocr_threads, inter_op_num_threads=1)
                    try:
                        self._engine = RapidOCR(**kwargs)
                    except Exception as exc:  # noqa: BLE001 - a broken model file or runtime
                        raise FatalProviderError(f"cannot load the bundled OCR models: {exc}") from exc
        return self._engine

    def read_text(self, rgb: Image.Image) -> list[tuple[str, float, float]]:
        """Read the text in an RGB image.

        Args:
            rgb: the image.

        Returns:
            ``(text, confidence, box_height_fraction)`` in reading order (top to bottom, left
            to right), only texts with confidence >= ``min_text_confidence`` and at least two
            letters or digits.
        """
        engine = self._ocr_engine()
        small = _thumbnail(rgb, self.ocr_max_side)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        with self._ocr_lock:
            result, _ = engine(bgr)
        texts: list[tuple[str, float, float]] = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            # Lone characters are mostly shapes misread as text (two stripes read as "二").
            if float(score) < self.min_text_confidence or sum(ch.isalnum() for ch in text) < 2:
                continue
            ys = [point[1] for point in box]
            texts.append((text, float(score), (max(ys) - min(ys)) / small.height))
        return texts

    # -- visual properties -------------------------------------------------------------------

    @staticmethod
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
        hue, sat, val = _hsv(sampled)
        counts = np.bincount(_colour_names(hue, sat, val).ravel(), minlength=len(COLOUR_NAMES))
        small = _thumbnail(rgb, 96)
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

    # -- the interface -----------------------------------------------------------------------

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
        rgb = _decode_rgb(image)
        props = self.visual_properties(rgb)
        texts = self.read_text(rgb)
        return Description(metadata=self._compose(props, texts), input_tokens=0, output_tokens=0)

    @staticmethod
    def _compose(props: dict[str, Any], texts: list[tuple[str, float, float]]) -> ImageMetadata:
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

    def check_access(self) -> None:
        """Load the OCR models; raise ``FatalProviderError`` if they cannot be loaded."""
        self._ocr_engine()


# ============================================================================================
# Embedder

_HUE_BINS = 12
_ACHROMATIC_BINS = 4
_GRID = 4  # gradient histogram cells per side
_ORIENTATION_BINS = 8
_LAYOUT = 8  # grayscale layout cells per side
_COLOUR_LAYOUT = 4  # opponent-colour layout cells per side
_CENTRE = 0.8  # layouts are taken from the central 80% (robust to small crops)

_BLOCK_SIZES = {
    "layout": _LAYOUT * _LAYOUT,
    "colour_layout": 2 * _COLOUR_LAYOUT * _COLOUR_LAYOUT,
    "colour": _HUE_BINS * 2 * 2 + _ACHROMATIC_BINS,
    "edges": _GRID * _GRID * _ORIENTATION_BINS,
}
_BLOCK_WEIGHTS = {"layout": 1.0, "colour_layout": 0.8, "colour": 1.0, "edges": 0.9}
FEATURE_DIM = sum(_BLOCK_SIZES.values())


def _standardise(block: np.ndarray) -> np.ndarray:
    """Zero mean, unit L2 norm; an all-constant block becomes zeros."""
    block = block.astype(np.float64).ravel()
    block = block - block.mean()
    norm = float(np.linalg.norm(block))
    return block / norm if norm > 1e-9 else np.zeros_like(block)


def _soft_bins(values: np.ndarray, bins: int, *, circular: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear soft assignment of values in [0, bins) to two neighbouring bins."""
    pos = values - 0.5
    low = np.floor(pos)
    frac = pos - low
    low = low.astype(np.int64)
    high = low + 1
    if circular:
        low %= bins
        high %= bins
    else:
        frac = np.where(low < 0, 1.0, frac)
        frac = np.where(high > bins - 1, 0.0, frac)
        low = np.clip(low, 0, bins - 1)
        high = np.clip(high, 0, bins - 1)
    return low, high, frac


def _colour_histogram(rgb: Image.Image) -> np.ndarray:
    """Soft HSV histogram: 12 hues x 2 saturations x 2 values for colours, 4 greys; sqrt'ed."""
    hue, sat, val = _hsv(_thumbnail(rgb, 96))
    hue, sat, val = hue.ravel(), sat.ravel(), val.ravel()
    chroma = np.clip((sat - 0.1) / 0.2, 0, 1) * np.clip((val - 0.1) / 0.2, 0, 1)
    hist = np.zeros(_BLOCK_SIZES["colour"], dtype=np.float64)
    h_lo, h_hi, h_f = _soft_bins(hue / 360.0 * _HUE_BINS, _HUE_BINS, circular=True)
    s_lo, s_hi, s_f = _soft_bins(np.clip(sat, 0, 1) * 2, 2, circular=False)
    v_lo, v_hi, v_f = _soft_bins(np.clip(val, 0, 1) * 2, 2, circular=False)
    for hb, hw in ((h_lo, 1 - h_f), (h_hi, h_f)):
        for sb, sw in ((s_lo, 1 - s_f), (s_hi, s_f)):
            for vb, vw in ((v_lo, 1 - v_f), (v_hi, v_f)):
                np.add.at(hist, (hb * 2 + sb) * 2 + vb, chroma * hw * sw * vw)
    g_lo, g_hi, g_f = _soft_bins(val * _ACHROMATIC_BINS, _ACHROMATIC_BINS, circular=False)
    offset = _HUE_BINS * 4
    np.add.at(hist, offset + g_lo, (1 - chroma) * (1 - g_f))
    np.add.at(hist, offset + g_hi, (1 - chroma) * g_f)
    return np.sqrt(hist / max(hist.sum(), 1e-12))


def _centre(rgb: Image.Image, fraction: float) -> Image.Image:
    width, height = rgb.size
    dx, dy = width * (1 - fraction) / 2, height * (1 - fraction) / 2
    return rgb.crop((round(dx), round(dy), round(width - dx), round(height - dy)))


def _layouts(small: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 grayscale layout and a 4x4 opponent-colour layout of the central region."""
    centre = _centre(small, _CENTRE)
    gray = np.asarray(centre.convert("L").resize((_LAYOUT, _LAYOUT), Image.Resampling.BOX), dtype=np.float64)
    colour = np.asarray(centre.resize((_COLOUR_LAYOUT, _COLOUR_LAYOUT), Image.Resampling.BOX), dtype=np.float64) / 255.0
    r, g, b = colour[..., 0], colour[..., 1], colour[..., 2]
    opponent = np.stack([(r - g) / np.sqrt(2), (r + g - 2 * b) / np.sqrt(6)])
    return gray / 255.0, opponent


def _edge_histogram(small: Image.Image) -> np.ndarray:
    """Gradient-orientation histograms (8 unsigned orientations) over a 4x4 grid; sqrt'ed."""
    gray = np.asarray(small.convert("L").resize((128, 128), Image.Resampling.BOX), dtype=np.float64) / 255.0
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = (gray[:, 2:] - gray[:, :-2]) / 2
    gy[1:-1, :] = (gray[2:, :] - gray[:-2, :]) / 2
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned
    o_lo, o_hi, o_f = _soft_bins(angle / np.pi * _ORIENTATION_BINS, _ORIENTATION_BINS, circular=True)
    cell = 128 // _GRID
    rows, cols = np.indices(gray.shape)
    cell_index = (rows // cell) * _GRID + (cols // cell)
    hist = np.zeros(_BLOCK_SIZES["edges"], dtype=np.float64)
    np.add.at(hist, cell_index * _ORIENTATION_BINS + o_lo, magnitude * (1 - o_f))
    np.add.at(hist, cell_index * _ORIENTATION_BINS + o_hi, magnitude * o_f)
    total = hist.sum()
    return np.sqrt(hist / total) if total > 1e-9 else hist


def image_features(rgb: Image.Image) -> dict[str, np.ndarray]:
    """The standardised feature blocks of an image (before weighting and projection).

    Args:
        rgb: the image.

    Returns:
        ``layout`` (8x8 grayscale of the centre), ``colour_layout`` (4x4 opponent colours of
        the centre), ``colour`` (soft HSV histogram) and ``edges`` (4x4 x 8 orientation
        histogram), each zero-mean and unit-norm (or all zeros when constant).
    """
    small = _thumbnail(rgb, 256)
    layout, colour_layout = _layouts(small)
    return {
        "layout": _standardise(layout),
        "colour_layout": _standardise(colour_layout),
        "colour": _standardise(_colour_histogram(small)),
        "edges": _standardise(_edge_histogram(small)),
    }


# Colour words a text query may use, and what they look like.
_COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40), "crimson": (190, 20, 50), "scarlet": (230, 35, 25), "maroon": (120, 20, 30),
    "orange": (245, 130, 30), "amber": (250, 170, 20), "yellow": (250, 215, 40), "gold": (230, 180, 40),
    "golden": (230, 180, 40), "green": (50, 160, 60), "lime": (150, 220, 50), "olive": (110, 120, 40),
    "teal": (30, 150, 150), "turquoise": (50, 200, 190), "cyan": (40, 200, 220), "aqua": (40, 200, 210),
    "blue": (40, 90, 210), "navy": (20, 35, 100), "azure": (60, 140, 240), "purple": (120, 50, 170),
    "violet": (140, 70, 200), "lavender": (180, 150, 220), "magenta": (220, 40, 160), "pink": (245, 130, 170),
    "brown": (120, 75, 40), "beige": (225, 205, 170), "tan": (210, 180, 140), "black": (15, 15, 15),
    "grey": (128, 128, 128), "gray": (128, 128, 128), "silver": (190, 190, 195), "white": (250, 250, 250),
}
# Words whose usual colours are well known; they count a little less than colour words.
_SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "sunset": ("orange", "red", "purple"), "sunrise": ("orange", "yellow", "pink"), "dusk": ("purple", "orange"),
    "sky": ("azure",), "sea": ("blue",), "ocean": ("blue",), "lake": ("blue",), "water": ("blue",),
    "forest": ("green",), "grass": ("green",), "meadow": ("green",), "hills": ("green",), "trees": ("green",),
    "snow": ("white",), "night": ("black", "navy"), "fire": ("orange", "red"), "flame": ("orange", "red"),
    "sand": ("beige",), "desert": ("beige", "tan"), "beach": ("beige", "azure"), "city": ("grey",),
    "concrete": ("grey",), "sun": ("yellow",), "lemon": ("yellow",), "leaf": ("green",), "leaves": ("green",),
}
_DARK_WORDS = {"dark", "dim", "deep", "night", "shadowy", "gloomy"}
_LIGHT_WORDS = {"light", "bright", "pale", "pastel", "pastels", "soft"}


def text_swatch(text: str, size: int = 96) -> Image.Image:
    """Render the colours a text names as an image: one band per colour, in proportion.

    Colour words count 1, words of scenes with well-known colours ("sunset", "forest", "sky")
    count 0.6 shared among their colours; "dark"/"night" darken and "light"/"pale" lighten
    every colour. A text naming no colour gives a mid-grey swatch (or dark/light grey when
    only brightness words are present).

    Args:
        text: the query.
        size: side of the square swatch.

    Returns:
        An RGB image.
    """
    words = re.findall(r"[a-z]+", text.lower())
    weights: dict[tuple[int, int, int], float] = {}
    for word in words:
        if word in _COLOUR_WORDS:
            weights[_COLOUR_WORDS[word]] = weights.get(_COLOUR_WORDS[word], 0.0) + 1.0
        elif word.rstrip("s") in _COLOUR_WORDS:  # "reds", "blues"
            colour = _COLOUR_WORDS[word.rstrip("s")]
            weights[colour] = weights.get(colour, 0.0) + 1.0
        elif word in _SCENE_WORDS:
            names = _SCENE_WORDS[word]
            for name in names:
                colour = _COLOUR_WORDS[name]
                weights[colour] = weights.get(colour, 0.0) + 0.6 / len(names)
    dark = any(word in _DARK_WORDS for word in words)
    light = any(word in _LIGHT_WORDS for word in words)
    if not weights:
        grey = 60 if dark and not light else 215 if light and not dark else 128
        weights = {(grey, grey, grey): 1.0}
    elif dark != light:
        factor = 0.45 if dark else None
        adjusted: dict[tuple[int, int, int], float] = {}
        for colour, weight in weights.items():
            if factor is not None:
                new = tuple(int(c * factor) for c in colour)
            else:
                new = tuple(int(c + (255 - c) * 0.45) for c in colour)
            adjusted[new] = adjusted.get(new, 0.0) + weight  # type: ignore[index]
        weights = adjusted
    array = np.zeros((size, size, 3), dtype=np.uint8)
    total = sum(weights.values())
    start = 0
    items = list(weights.items())
    for i, (colour, weight) in enumerate(items):
        end = size if i == len(items) - 1 else start + round(size * weight / total)
        array[:, start:end] = colour
        start = end
    return Image.fromarray(array, "RGB")


class LocalEmbedder(Embedder):
    """A content-based image vector, computed offline and deterministically.

    An image becomes four standardised feature blocks (a blurred 8x8 grayscale layout and a
    4x4 opponent-colour layout of its central 80%, a soft HSV colour histogram, and a 4x4 grid
    of gradient-orientation histograms), weighted and concatenated (``FEATURE_DIM`` values),
    then projected to ``dim`` by a fixed Gaussian random matrix seeded by ``dim`` (orthonormalised:
    for 384 and 1024 cosines between feature vectors are kept exactly, for 256 approximately)
    and L2-normalised.
    Near-duplicates (small crops, resizes, re-encodes, small colour shifts) stay close; a
    mirror image is *not* treated as a duplicate.

    Limitation: this space knows colours, brightness, layout and texture, not meaning.
    ``embed_text`` can only use the colours a query names (or implies with a few scene words
    like "sunset" or "forest"): it renders them as a swatch and embeds the swatch's colour
    histogram, leaving the layout and edge parts empty. So "red" ranks red images first, but
    "cat" or "invoice" carry no information and map to the vector of a neutral grey swatch.
    """

    image_limits: ImageLimits = TITAN_LIMITS
    dims = LOCAL_EMBEDDING_DIMS

    def __init__(self, dim: int = 1024):
        """Set up the projection for one vector size.

        Args:
            dim: vector length, one of 256, 384, 1024 (those of Titan Multimodal Embeddings).
        """
        if dim not in LOCAL_EMBEDDING_DIMS:
            raise ValueError(f"dim must be one of {LOCAL_EMBEDDING_DIMS}, got {dim}")
        self.dim = dim
        self.model_id = f"local/visual-embed-v1-{dim}"
        rng = np.random.default_rng(20_240_601 + dim)
        gaussian = rng.standard_normal((dim, FEATURE_DIM))
        if dim >= FEATURE_DIM:
            q, r = np.linalg.qr(gaussian)  # (dim, FEATURE_DIM), orthonormal columns: an isometry
            projection = q * np.sign(np.diag(r))
        else:  # orthonormal rows: cosines are kept approximately
            q, r = np.linalg.qr(gaussian.T)
            projection = (q * np.sign(np.diag(r))).T
        self._projection = np.ascontiguousarray(projection)
        self._projection.setflags(write=False)

    def _project(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        features = np.concatenate([blocks[name] * _BLOCK_WEIGHTS[name] for name in _BLOCK_SIZES])
        vector = self._projection @ features
        norm = float(np.linalg.norm(vector))
        if norm < 1e-12:  # nothing measurable: a fixed, defined direction
            vector = self._projection[:, 0].copy()
            norm = float(np.linalg.norm(vector))
        return (vector / norm).astype(np.float32)

    def embed_pil(self, rgb: Image.Image) -> np.ndarray:
        """Embed a decoded RGB image (see ``embed_image``)."""
        return self._project(image_features(rgb))

    def embed_image(self, image: PreparedImage) -> np.ndarray:
        """Embed one image.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            A unit-norm float32 vector of length ``dim``.

        Raises:
            ImageError: the bytes do not decode.
        """
        return self.embed_pil(_decode_rgb(image))

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a text query by the colours it names (see the class docstring's limitation).

        Args:
            text: the query.

        Returns:
            A unit-norm float32 vector of length ``dim``; defined for any text, empty included.
        """
        swatch = text_swatch(text or "")
        blocks = {name: np.zeros(size) for name, size in _BLOCK_SIZES.items()}
        blocks["colour"] = _standardise(_colour_histogram(swatch))
        return self._project(blocks)
