"""Looking at the dataset as a whole: a similarity heatmap and near-duplicate groups.

Near-duplicate threshold
------------------------
``DEFAULT_DUPLICATE_THRESHOLD`` (cosine >= 0.9) was chosen by measurement on the sample
catalogue with the local embedder (both at 256 and at 1024 dims): every fabricated variant
(10% crop, resize to 60%, JPEG quality 35, small hue/brightness shift) scores 0.93-1.00 against
its original, while the most similar *unrelated* pair (two different hill landscapes drawn by
the same generator) scores 0.88. 0.9 sits in that gap: lower and look-alike scenes of one theme
merge, higher and crops start to fall out. The number belongs to the embedding model: for Titan
vectors measure it again on images you know (``near_duplicate_groups`` takes any threshold,
the CLI has ``--threshold``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from media_enrichment.schema import clean_line
from media_enrichment.search import VectorIndex

#: Cosine similarity at or above which two images count as near-duplicates (see the module doc).
DEFAULT_DUPLICATE_THRESHOLD = 0.9

#: Memory one block of the pairwise similarity computation may take (float32 scores).
DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024

# ============================================================================================
# Heatmap

# Anchor colours of matplotlib's "viridis" (perceptually uniform, readable in greyscale).
_VIRIDIS = np.array(
    [
        (68, 1, 84), (71, 44, 122), (59, 82, 139), (44, 114, 142), (33, 145, 140),
        (39, 173, 129), (94, 201, 98), (170, 220, 50), (253, 231, 37),
    ],
    dtype=np.float64,
)
_CELL = 18  # pixels per cell side
_LABEL_CHARS = 32  # longer ids are shortened with an ellipsis
_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)


def _colourmap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis RGB (uint8), any shape -> shape + (3,)."""
    positions = np.linspace(0.0, 1.0, len(_VIRIDIS))
    clipped = np.clip(values, 0.0, 1.0)
    channels = [np.interp(clipped, positions, _VIRIDIS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(math.ceil(right - min(left, 0))), int(math.ceil(bottom - min(top, 0)))


def _label(image_id: str) -> str:
    return image_id if len(image_id) <= _LABEL_CHARS else image_id[: _LABEL_CHARS - 1] + "…"


def _text_image(text: str, font, *, angle: int = 0) -> Image.Image:
    """Text as an 'L' mask (white on black), rotated counter-clockwise by ``angle`` degrees."""
    width, height = _text_size(font, text)
    mask = Image.new("L", (max(1, width), max(1, height)), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=font, fill=255)
    return mask.rotate(angle, expand=True) if angle else mask


def _ticks(vmin: float, vmax: float) -> list[float]:
    """Both ends of the scale plus round values between them (multiples of 0.05 to 0.5)."""
    span = vmax - vmin
    step = next(s for s in (0.05, 0.1, 0.2, 0.25, 0.5) if span / s <= 7)
    first = math.ceil(round(vmin / step, 6)) * step
    inner = [round(first + i * step, 6) for i in range(int(round((vmax - first) / step, 6)) + 1)]
    inner = [t for t in inner if t - vmin > step * 0.6 and vmax - t > step * 0.6]
    return [vmin, *inner, vmax]


def similarity_heatmap(index: VectorIndex, path: str | Path, *, max_images: int = 60) -> Path:
    """Draw the cosine similarity matrix of the dataset's images as a PNG (Pillow only).

    One coloured cell per pair (viridis: dark is dissimilar, yellow is identical), image ids
    along both axes (rotated on the x axis), a colour scale with ticks on the right. The scale
    runs from the lowest similarity shown (rounded down to 0.1) to 1.

    Args:
        index: the dataset's vectors.
        path: the PNG to write (parent folders are created).
        max_images: at most this many images, the first ones by image_id (the title says so).

    Returns:
        The path written.

    Raises:
        ValueError: max_images < 1.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    path = Path(path)
    total = len(index)
    rows = np.argsort(index.ids.astype(str), kind="stable")[:max_images]
    ids = [str(i) for i in index.ids[rows]]
    vectors = index.matrix[rows]
    similarity = np.clip(vectors @ vectors.T, -1.0, 1.0)
    m = len(ids)

    vmax = 1.0
    vmin = min(math.floor(float(similarity.min()) * 10) / 10, vmax - 0.1)
    colours = _colourmap((similarity - vmin) / (vmax - vmin))

    font, small, big = _font(12), _font(11), _font(15)
    labels = [_label(i) for i in ids]
    label_w = max(_text_size(font, label)[0] for label in labels)
    label_h = _text_size(font, "Ag")[1]
    title = "Cosine similarity between image vectors"
    subtitle = (
        f"first {m} of {total} images by image_id" if m < total else f"{m} images"
    ) + f" · {index.embedding_model} ({index.dim} dims)"

    pad = 12
    grid = m * _CELL
    axis_title_h = _text_size(font, "image_id")[1]
    left = pad + axis_title_h + 8 + label_w + 6
    top = pad + _text_size(big, title)[1] + 6 + _text_size(small, subtitle)[1] + 14
    bar_h = max(grid, 160)
    bar_w = 18
    tick_w = _text_size(small, "-0.00")[0]
    right = 24 + bar_w + 6 + tick_w + pad
    bottom = 6 + label_w + 8 + axis_title_h + pad
    width = max(left + grid + right, pad * 2 + _text_size(big, title)[0], pad * 2 + _text_size(small, subtitle)[0])
    height = top + bar_h + bottom

    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    # Cells, with 1-pixel white separators when there is room for them.
    cells = np.repeat(np.repeat(colours, _CELL, axis=0), _CELL, axis=1)
    if m <= 200:
        cells[::_CELL, :] = _BACKGROUND
        cells[:, ::_CELL] = _BACKGROUND
    canvas.paste(Image.fromarray(np.ascontiguousarray(cells), "RGB"), (left, top))
    draw.rectangle((left, top, left + grid, top + grid), outline=(120, 120, 120))

    # Titles.
    draw.text((pad, pad), title, font=big, fill=_INK)
    draw.text((pad, pad + _text_size(big, title)[1] + 6), subtitle, font=small, fill=(90, 90, 90))

    # y labels (right-aligned next to their row) and x labels (rotated, ending at the grid).
    for i, label in enumerate(labels):
        text_w, _ = _text_size(font, label)
        draw.text((left - 6 - text_w, top + i * _CELL + (_CELL - label_h) // 2), label, font=font, fill=_INK)
        mask = _text_image(label, font, angle=90)
        x = left + i * _CELL + (_CELL - mask.width) // 2
        canvas.paste(_INK, (x, top + grid + 6 + (label_w - mask.height)), mask)

    # Axis titles.
    x_title = _text_size(font, "image_id")[0]
    draw.text((left + (grid - x_title) // 2, top + grid + 6 + label_w + 8), "image_id", font=font, fill=_INK)
    y_title = _text_image("image_id", font, angle=90)
    canvas.paste(_INK, (pad, top + (grid - y_title.height) // 2), y_title)

    # Colour scale: a vertical bar from vmin (bottom) to vmax (top), with five ticks.
    bar_x = left + grid + 24
    ramp = np.linspace(1.0, 0.0, bar_h)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(_colourmap(ramp), "RGB"), (bar_x, top))
    draw.rectangle((bar_x, top, bar_x + bar_w, top + bar_h), outline=(120, 120, 120))
    for value in _ticks(vmin, vmax):
        t = (value - vmin) / (vmax - vmin)
        y = top + int(round((1 - t) * (bar_h - 1)))
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 4, y), fill=_INK)
        tick = f"{value:.2f}"
        draw.text((bar_x + bar_w + 6, y - _text_size(small, tick)[1] // 2), tick, font=small, fill=_INK)
    legend = "cosine"
    draw.text((bar_x, top - _text_size(small, legend)[1] - 4), legend, font=small, fill=_INK)

    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


# ============================================================================================
# Near-duplicates


def _flatten(parent: np.ndarray) -> np.ndarray:
    """Point every node straight at its root (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge the components of each pair (a[i], b[i]); ``parent`` is flat (every node -> root).

    Vectorised: each round points every root met by a pair at the smallest root it is paired
    with, then flattens; rounds repeat until every pair shares a root. Roots are always the
    smallest row of their component.
    """
    a, b = parent[a], parent[b]
    while True:
        differ = a != b
        if not differ.any():
            return parent
        a, b = a[differ], b[differ]
        low, high = np.minimum(a, b), np.maximum(a, b)
        np.minimum.at(parent, high, low)
        parent = _flatten(parent)
        a, b = parent[a], parent[b]


def near_duplicate_groups(
    index: VectorIndex,
    *,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> list[list[str]]:
    """Groups of images linked by cosine >= threshold (connected components of that graph).

    The pairwise similarities are computed a block of rows at a time against the rows after
    them (upper triangle only), so memory stays near ``block_bytes`` whatever the table's size;
    time is quadratic in the number of rows (100,000 x 1024 dims is a few minutes of BLAS).
    Linking is transitive: A~B and B~C puts A, B and C in one group even if A and C are further
    apart, so a threshold set too low chains unrelated images into one large group.

    Args:
        index: the dataset's vectors.
        threshold: cosine similarity in (0, 1]; see ``DEFAULT_DUPLICATE_THRESHOLD``.
        block_bytes: memory budget for one block of similarity scores.

    Returns:
        Groups of two or more image ids; ids sorted within a group, groups largest first, then
        by their first id.

    Raises:
        ValueError: threshold outside (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    n = len(index)
    matrix = index.matrix
    parent = np.arange(n, dtype=np.int64)
    # Float32 rounding can put an identical pair at 0.99999994: compare with a hair of slack.
    limit = np.float32(threshold) - np.float32(1e-6)
    start = 0
    while start < n:
        block = max(1, min(n - start, block_bytes // (4 * (n - start))))
        stop = start + block
        scores = matrix[start:stop] @ matrix[start:].T  # (block, n - start)
        rows, cols = np.nonzero(scores >= limit)
        keep = cols > rows  # upper triangle: col offset is relative to `start` as well
        if keep.any():
            parent = _union(parent, rows[keep] + start, cols[keep] + start)
        start = stop
    roots, counts = np.unique(parent, return_counts=True)
    order = np.argsort(parent, kind="stable")  # rows of one component are contiguous here
    starts = np.searchsorted(parent[order], roots)
    groups = [order[s : s + c] for s, c in zip(starts[counts > 1], counts[counts > 1])]
    named = [sorted(str(index.ids[r]) for r in members) for members in groups]
    return sorted(named, key=lambda g: (-len(g), g[0]))


def _cell(text: str) -> str:
    # A title is model output: control characters and escape sequences go (see schema.clean_text).
    return clean_line(text).replace("\\", "\\\\").replace("|", "\\|")


def duplicates_report(
    groups: list[list[str]], index: VectorIndex, *, threshold: float | None = None
) -> str:
    """A markdown report of near-duplicate groups.

    Args:
        groups: as returned by ``near_duplicate_groups``.
        index: the index they came from (titles and vectors).
        threshold: the threshold used, stated in the report when given.

    Returns:
        Markdown: a summary line, then one table per group with each image's title and its
        highest cosine similarity to another member of the group.
    """
    in_groups = sum(len(g) for g in groups)
    rule = f"cosine >= {threshold:.2f}" if threshold is not None else "near-duplicates"
    lines = [
        "# Near-duplicate groups",
        "",
        f"{len(groups)} group(s) of {rule} among {len(index)} images "
        f"({in_groups} images in groups); vectors: `{index.embedding_model}` ({index.dim} dims).",
    ]
    if not groups:
        lines += ["", "No near-duplicates found."]
    for number, group in enumerate(groups, 1):
        rows = [index.row(image_id) for image_id in group]
        best: list[str] = ["-"] * len(rows)
        if len(rows) <= 2000:
            sims = index.matrix[rows] @ index.matrix[rows].T
            np.fill_diagonal(sims, -np.inf)
            best = [f"{v:.3f}" for v in sims.max(axis=1)]
        lines += [
            "",
            f"## Group {number}: {len(group)} images",
            "",
            "| image_id | title | best cosine in group |",
            "|---|---|---:|",
        ]
        lines += [
            f"| {_cell(image_id)} | {_cell(index.titles[row])} | {score} |"
            for image_id, row, score in zip(group, rows, best)
        ]
    return "\n".join(lines) + "\n"

