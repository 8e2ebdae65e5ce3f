"""Pixel helpers both local providers measure with: a box-filtered thumbnail and HSV planes."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["hsv", "thumbnail"]


def thumbnail(rgb: Image.Image, long_edge: int) -> Image.Image:
    """A box-filtered (area-averaged) copy whose longer side is at most ``long_edge``."""
    width, height = rgb.size
    scale = long_edge / max(width, height)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return rgb.resize(size, Image.Resampling.BOX)


def hsv(rgb: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], as float32 arrays."""
    planes = np.asarray(rgb.convert("HSV"), dtype=np.float32)
    return planes[..., 0] * (360.0 / 256.0), planes[..., 1] / 255.0, planes[..., 2] / 255.0
