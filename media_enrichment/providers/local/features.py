"""The content features of an image that the local embedder projects.

Four blocks, each standardised (zero mean, unit norm): a blurred 8x8 grayscale layout and a 4x4
opponent-colour layout of the central 80% (robust to small crops), a soft HSV colour histogram
(12 hues x 2 saturations x 2 values, plus 4 greys), and a 4x4 grid of gradient-orientation
histograms (8 unsigned orientations). ``feature_vector`` weights and concatenates them into
``FEATURE_DIM`` values; ``colour_features`` gives the colour block alone, for a text's swatch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from media_enrichment.providers.local.pixels import hsv, thumbnail

__all__ = ["BLOCK_SIZES", "FEATURE_DIM", "colour_features", "feature_vector", "image_features"]

_HUE_BINS = 12
_ACHROMATIC_BINS = 4
_GRID = 4  # gradient histogram cells per side
_ORIENTATION_BINS = 8
_LAYOUT = 8  # grayscale layout cells per side
_COLOUR_LAYOUT = 4  # opponent-colour layout cells per side
_CENTRE = 0.8  # layouts are taken from the central 80% (robust to small crops)

BLOCK_SIZES = {
    "layout": _LAYOUT * _LAYOUT,
    "colour_layout": 2 * _COLOUR_LAYOUT * _COLOUR_LAYOUT,
    "colour": _HUE_BINS * 2 * 2 + _ACHROMATIC_BINS,
    "edges": _GRID * _GRID * _ORIENTATION_BINS,
}
_BLOCK_WEIGHTS = {"layout": 1.0, "colour_layout": 0.8, "colour": 1.0, "edges": 0.9}
FEATURE_DIM = sum(BLOCK_SIZES.values())


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
    hue, sat, val = hsv(thumbnail(rgb, 96))
    hue, sat, val = hue.ravel(), sat.ravel(), val.ravel()
    chroma = np.clip((sat - 0.1) / 0.2, 0, 1) * np.clip((val - 0.1) / 0.2, 0, 1)
    hist = np.zeros(BLOCK_SIZES["colour"], dtype=np.float64)
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
    hist = np.zeros(BLOCK_SIZES["edges"], dtype=np.float64)
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
    small = thumbnail(rgb, 256)
    layout, colour_layout = _layouts(small)
    return {
        "layout": _standardise(layout),
        "colour_layout": _standardise(colour_layout),
        "colour": _standardise(_colour_histogram(small)),
        "edges": _standardise(_edge_histogram(small)),
    }


def colour_features(rgb: Image.Image) -> dict[str, np.ndarray]:
    """The feature blocks of an image's colours alone: layout and edge blocks are zeros."""
    blocks = {name: np.zeros(size) for name, size in BLOCK_SIZES.items()}
    blocks["colour"] = _standardise(_colour_histogram(rgb))
    return blocks


def feature_vector(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """The weighted blocks, concatenated in a fixed order (``FEATURE_DIM`` values)."""
    return np.concatenate([blocks[name] * _BLOCK_WEIGHTS[name] for name in BLOCK_SIZES])
