"""The painters of the sample catalogue: one per visual theme, drawn with Pillow and NumPy.

Each painter takes a ``random.Random`` (every drawing decision), a NumPy generator (grain) and a
size, and returns an RGB image: ``draw_sunset`` and ``draw_landscape`` (gradients, hills, water,
grain), ``draw_city`` (a skyline by day or night), ``draw_product`` (an object on white, with a
soft shadow), ``draw_poster`` (large clear text, for OCR) and ``draw_abstract`` (circles,
stripes or blocks). The same inputs give the same pixels.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "POSTER_SCHEMES",
    "PRODUCT_COLOURS",
    "draw_abstract",
    "draw_city",
    "draw_landscape",
    "draw_poster",
    "draw_product",
    "draw_sunset",
]

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Drawing helpers


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A scalable font (Pillow >= 10.1 bundles one); the bitmap default otherwise."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - very old Pillow
        return ImageFont.load_default()


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _vertical_gradient(size: tuple[int, int], stops: list[tuple[float, RGB]]) -> Image.Image:
    """An image whose rows run through colour ``stops`` (position 0..1, colour)."""
    width, height = size
    ys = np.linspace(0.0, 1.0, height)
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], dtype=np.float64)
    column = np.stack([np.interp(ys, positions, colours[:, k]) for k in range(3)], axis=1)
    array = np.repeat(column[:, None, :], width, axis=1)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _add_grain(image: Image.Image, nrng: np.random.Generator, sigma: float = 3.0) -> Image.Image:
    """A little deterministic sensor-like noise, so the pictures are not perfectly flat."""
    array = np.asarray(image, dtype=np.float32)
    array += nrng.standard_normal(size=array.shape, dtype=np.float32) * np.float32(sigma)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _ridge(rng: random.Random, width: int, base: float, amplitude: float, steps: int) -> list[tuple[int, int]]:
    """A jagged skyline of hills: points from the left edge to the right edge."""
    points = []
    for i in range(steps + 1):
        x = int(width * i / steps)
        y = int(base + rng.uniform(-amplitude, amplitude))
        points.append((x, y))
    return points


# --------------------------------------------------------------------------------------------
# Themes

_SUNSET_PALETTES: tuple[tuple[RGB, RGB, RGB], ...] = (
    ((40, 30, 90), (240, 110, 50), (255, 210, 90)),  # purple -> orange -> yellow
    ((20, 40, 110), (230, 70, 60), (255, 170, 80)),  # navy -> red -> orange
    ((90, 40, 120), (250, 120, 140), (255, 200, 150)),  # violet -> pink -> peach
    ((10, 20, 50), (200, 60, 30), (250, 140, 40)),  # night -> deep red -> orange
)


def draw_sunset(rng: random.Random, nrng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top, mid, low = rng.choice(_SUNSET_PALETTES)
    horizon = rng.uniform(0.55, 0.72)
    image = _vertical_gradient(size, [(0.0, top), (horizon * 0.7, mid), (horizon, low), (1.0, low)])
    draw = ImageDraw.Draw(image)
    sun_x = rng.uniform(0.2, 0.8) * width
    sun_y = horizon * height - rng.uniform(0.02, 0.2) * height
    radius = rng.uniform(0.05, 0.09) * width
    for k in range(6, 0, -1):  # glow
        r = radius * (1 + 0.25 * k)
        glow = _mix(low, (255, 240, 200), 0.15 * (7 - k))
        draw.ellipse((sun_x - r, sun_y - r, sun_x + r, sun_y + r), fill=glow)
    draw.ellipse((sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius), fill=(255, 244, 214))
    # Water below the horizon, then two ranges of dark hills.
    water_top = int(horizon * height)
    draw.rectangle((0, water_top, width, height), fill=_mix(mid, top, 0.55))
    for i in range(8):
        y = water_top + int((i + 1) * (height - water_top) / 9)
        half = radius * (1.2 - 0.1 * i)
        draw.line((sun_x - half, y, sun_x + half, y), fill=_mix(low, (255, 240, 200), 0.4), width=3)
    far = _ridge(rng, width, horizon * height - 0.06 * height, 0.05 * height, rng.randint(5, 9))
    draw.polygon(far + [(width, water_top), (0, water_top)], fill=_mix(top, (0, 0, 0), 0.35))
    if rng.random() < 0.6:
        near_base = horizon * height + 0.12 * height
        near = _ridge(rng, width, near_base, 0.06 * height, rng.randint(3, 6))
        draw.polygon(near + [(width, height), (0, height)], fill=_mix(top, (0, 0, 0), 0.7))
    return _add_grain(image.filter(ImageFilter.GaussianBlur(1.2)), nrng)


def draw_landscape(rng: random.Random, nrng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    horizon = rng.uniform(0.4, 0.6)
    image = _vertical_gradient(size, [(0.0, (60, 120, 210)), (horizon, (170, 210, 245)), (1.0, (170, 210, 245))])
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):  # clouds
        cx, cy = rng.uniform(0, width), rng.uniform(0.05, horizon * 0.7) * height
        for _ in range(4):
            rx, ry = rng.uniform(0.04, 0.09) * width, rng.uniform(0.03, 0.05) * height
            dx, dy = rng.uniform(-0.05, 0.05) * width, rng.uniform(-0.02, 0.02) * height
            draw.ellipse((cx + dx - rx, cy + dy - ry, cx + dx + rx, cy + dy + ry), fill=(250, 250, 252))
    greens = [(70, 140, 60), (50, 115, 45), (35, 90, 35)]
    if rng.random() < 0.5:  # distant snowy mountains
        peaks = _ridge(rng, width, horizon * height - 0.12 * height, 0.1 * height, rng.randint(3, 6))
        draw.polygon(peaks + [(width, horizon * height), (0, horizon * height)], fill=(120, 125, 150))
    for i, green in enumerate(greens):
        base = horizon * height + i * 0.12 * height
        hills = _ridge(rng, width, base, 0.05 * height, rng.randint(3, 7))
        draw.polygon(hills + [(width, height), (0, height)], fill=green)
    if rng.random() < 0.5:  # a lake
        lx, ly = rng.uniform(0.2, 0.6) * width, rng.uniform(0.75, 0.85) * height
        draw.ellipse((lx, ly, lx + 0.35 * width, ly + 0.1 * height), fill=(80, 150, 200))
    for _ in range(rng.randint(3, 9)):  # trees
        tx, ty = rng.uniform(0, width), rng.uniform(horizon + 0.1, 0.95) * height
        th = rng.uniform(0.06, 0.14) * height
        draw.polygon([(tx, ty - th), (tx - th * 0.35, ty), (tx + th * 0.35, ty)], fill=(25, 70, 30))
        draw.rectangle((tx - th * 0.05, ty, tx + th * 0.05, ty + th * 0.2), fill=(90, 60, 30))
    return _add_grain(image.filter(ImageFilter.GaussianBlur(0.8)), nrng)


def draw_city(rng: random.Random, nrng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    night = rng.random() < 0.5
    if night:
        image = _vertical_gradient(size, [(0.0, (8, 10, 30)), (0.7, (30, 35, 75)), (1.0, (30, 35, 75))])
    else:
        image = _vertical_gradient(size, [(0.0, (120, 170, 230)), (0.7, (200, 220, 240)), (1.0, (200, 220, 240))])
    draw = ImageDraw.Draw(image)
    ground = int(height * rng.uniform(0.85, 0.93))
    x = -rng.randint(0, 40)
    while x < width:
        bw = int(rng.uniform(0.07, 0.16) * width)
        bh = int(rng.uniform(0.3, 0.8) * height)
        top = ground - bh
        shade = rng.randint(60, 140) if not night else rng.randint(20, 50)
        tint = rng.choice([(0, 0, 0), (12, 6, 0), (0, 4, 10)])
        body = (shade + tint[0], shade + tint[1], shade + tint[2])
        draw.rectangle((x, top, x + bw, ground), fill=body)
        win = max(6, bw // 8)
        for wy in range(top + win, ground - win, win * 2):
            for wx in range(x + win // 2, x + bw - win, win * 2):
                lit = rng.random() < (0.55 if night else 0.0)
                colour = (250, 215, 120) if lit else ((40, 45, 60) if night else _mix(body, (210, 230, 250), 0.5))
                draw.rectangle((wx, wy, wx + win, wy + int(win * 1.3)), fill=colour)
        x += bw + rng.randint(2, 12)
    draw.rectangle((0, ground, width, height), fill=(45, 45, 50) if not night else (15, 15, 20))
    for lx in range(0, width, max(40, width // 12)):  # lane markings
        draw.rectangle((lx, (ground + height) // 2, lx + 18, (ground + height) // 2 + 4), fill=(230, 230, 200))
    return _add_grain(image, nrng, sigma=2.0)


PRODUCT_COLOURS: tuple[RGB, ...] = (
    (210, 30, 40),  # red
    (30, 90, 200),  # blue
    (40, 160, 70),  # green
    (245, 190, 20),  # yellow
    (120, 60, 170),  # purple
    (240, 120, 20),  # orange
)


def draw_product(
    rng: random.Random, nrng: np.random.Generator, size: tuple[int, int], colour: RGB | None = None, kind: str | None = None
) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    colour = colour or rng.choice(PRODUCT_COLOURS)
    dark = _mix(colour, (0, 0, 0), 0.35)
    cx, base = width / 2 + rng.uniform(-0.08, 0.08) * width, height * 0.85
    scale = min(width, height) * rng.uniform(1.25, 1.4)
    # Soft shadow.
    shadow = Image.new("L", size, 0)
    shadow_box = (cx - scale * 0.3, base - scale * 0.04, cx + scale * 0.3, base + scale * 0.04)
    ImageDraw.Draw(shadow).ellipse(shadow_box, fill=90)
    shadow = shadow.filter(ImageFilter.GaussianBlur(scale * 0.03))
    image.paste((170, 170, 170), (0, 0), shadow)
    kind = kind or rng.choice(["bottle", "mug", "box", "ball"])
    if kind == "bottle":
        w, h = scale * 0.22, scale * 0.55
        draw.rounded_rectangle((cx - w / 2, base - h, cx + w / 2, base), radius=w * 0.25, fill=colour)
        draw.rectangle((cx - w * 0.18, base - h - scale * 0.12, cx + w * 0.18, base - h + 5), fill=colour)
        draw.rectangle((cx - w * 0.22, base - h - scale * 0.16, cx + w * 0.22, base - h - scale * 0.11), fill=(40, 40, 40))
        draw.rectangle((cx - w / 2, base - h * 0.6, cx + w / 2, base - h * 0.3), fill=(245, 245, 240))
    elif kind == "mug":
        w, h = scale * 0.38, scale * 0.42
        draw.ellipse((cx + w * 0.3, base - h * 0.8, cx + w * 0.85, base - h * 0.2), outline=colour, width=int(scale * 0.05))
        draw.rounded_rectangle((cx - w / 2, base - h, cx + w / 2, base), radius=w * 0.08, fill=colour)
        draw.ellipse((cx - w / 2, base - h - w * 0.08, cx + w / 2, base - h + w * 0.08), fill=dark)
    elif kind == "box":
        w, h, d = scale * 0.42, scale * 0.36, scale * 0.12
        left, right, top = cx - w / 2, cx + w / 2, base - h
        lid = [(left, top), (left + d, top - d), (right + d, top - d), (right, top)]
        draw.polygon(lid, fill=_mix(colour, (255, 255, 255), 0.3))
        draw.polygon([(right, top), (right + d, top - d), (right + d, base - d), (right, base)], fill=dark)
        draw.rectangle((cx - w / 2, base - h, cx + w / 2, base), fill=colour)
    else:
        r = scale * 0.22
        draw.ellipse((cx - r, base - 2 * r, cx + r, base), fill=colour)
        draw.arc((cx - r, base - 2 * r, cx + r, base), 200, 340, fill=(250, 250, 250), width=int(r * 0.12))
        draw.ellipse((cx - r * 0.5, base - r * 1.6, cx - r * 0.2, base - r * 1.3), fill=_mix(colour, (255, 255, 255), 0.6))
    return image


POSTER_SCHEMES: tuple[tuple[RGB, RGB], ...] = (
    ((220, 30, 45), (255, 255, 255)),  # red on white text
    ((20, 20, 25), (255, 220, 40)),  # black with yellow text
    ((25, 80, 190), (255, 255, 255)),  # blue with white text
    ((250, 200, 30), (20, 20, 20)),  # yellow with black text
    ((30, 130, 70), (255, 255, 255)),  # green with white text
)


def draw_poster(
    rng: random.Random,
    nrng: np.random.Generator,
    size: tuple[int, int],
    lines: tuple[str, ...] = ("SALE",),
    scheme: tuple[RGB, RGB] | None = None,
) -> Image.Image:
    width, height = size
    background, ink = scheme or rng.choice(POSTER_SCHEMES)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    margin = int(min(width, height) * 0.05)
    draw.rectangle((margin, margin, width - margin, height - margin), outline=ink, width=max(4, margin // 4))
    # The largest font for which the longest line fills ~80% of the width.
    longest = max(lines, key=len)
    font_size = int(height * 0.3 / max(1, len(lines)) + height * 0.1)
    while font_size > 12:
        font = _font(font_size)
        left, _, right, _ = draw.textbbox((0, 0), longest, font=font)
        if right - left <= width * 0.8 and font_size * len(lines) * 1.3 <= height * 0.7:
            break
        font_size -= 4
    font = _font(font_size)
    line_height = int(font_size * 1.3)
    y = (height - line_height * len(lines)) / 2
    for line in lines:
        left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
        draw.text(((width - (right - left)) / 2 - left, y), line, font=font, fill=ink)
        y += line_height
    # A few decorative stars in the corners.
    for _ in range(rng.randint(2, 4)):
        sx = rng.choice([margin * 2.5, width - margin * 2.5])
        sy = rng.choice([margin * 2.5, height - margin * 2.5])
        r = margin * 0.8
        draw.regular_polygon((sx, sy, r), n_sides=5, rotation=rng.uniform(0, 72), fill=ink)
    return image


def draw_abstract(rng: random.Random, nrng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    style = rng.choice(["circles", "stripes", "blocks"])
    palette = rng.sample(
        [
            (230, 60, 80), (40, 170, 160), (250, 200, 60), (60, 70, 160),
            (240, 130, 180), (30, 30, 30), (245, 240, 230), (120, 200, 90),
        ],
        4,
    )
    image = Image.new("RGB", size, palette[0])
    draw = ImageDraw.Draw(image)
    if style == "circles":
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        step = rng.uniform(0.04, 0.07) * width
        for i in range(int(max(width, height) / step) + 2, 0, -1):
            r = i * step
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=palette[i % 4])
    elif style == "stripes":
        step = int(rng.uniform(0.04, 0.09) * width)
        angle_shift = rng.uniform(-0.6, 0.6) * height
        for i, x in enumerate(range(-height, width + height, step)):
            band = [(x, 0), (x + step, 0), (x + step + angle_shift, height), (x + angle_shift, height)]
            draw.polygon(band, fill=palette[i % 4])
    else:
        for _ in range(rng.randint(8, 14)):
            x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
            w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=rng.choice(palette[1:]), outline=(20, 20, 20), width=6)
    return image
