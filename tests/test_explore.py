"""Exploring an enriched dataset: similarity heatmap, near-duplicate groups and their CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from media_enrichment.explore import (
    DEFAULT_DUPLICATE_THRESHOLD,
    duplicates_report,
    near_duplicate_groups,
    similarity_heatmap,
)
from media_enrichment.search import VectorIndex
from tests.helpers import run_cli

VIRIDIS_TOP = (253, 231, 37)  # the colour of cosine 1.0 (the diagonal)


@pytest.fixture(scope="module")
def origin(enriched_sample) -> dict[str, str]:
    """image_id -> the original it was fabricated from (itself for an original)."""
    frame = enriched_sample.read_assets(columns=["image_id", "attributes"])
    return {i: json.loads(a).get("variant_of") or i for i, a in zip(frame["image_id"], frame["attributes"])}


# -- near-duplicates ---------------------------------------------------------------------------


def test_every_variant_is_grouped_with_its_original_and_nothing_else(sample_index, origin):
    groups = near_duplicate_groups(sample_index)
    families: dict[str, set[str]] = {}
    for image_id, original in origin.items():
        families.setdefault(original, set()).add(image_id)
    expected = sorted((sorted(f) for f in families.values() if len(f) > 1), key=lambda g: (-len(g), g[0]))
    assert len(expected) >= 4
    assert groups == expected
    # Not one giant group: each group is one original's family (2 or 3 images here).
    assert max(len(g) for g in groups) <= 3
    assert all(len({origin[i] for i in g}) == 1 for g in groups)


def test_groups_do_not_depend_on_the_block_size(sample_index):
    expected = near_duplicate_groups(sample_index)
    assert near_duplicate_groups(sample_index, block_bytes=1) == expected  # one row per block
    assert near_duplicate_groups(sample_index, block_bytes=4 * len(sample_index) * 5) == expected


def test_threshold_extremes(sample_index):
    everything = near_duplicate_groups(sample_index, threshold=1e-9)
    assert len(everything) <= 1  # a very low threshold chains (almost) everything together
    exact = near_duplicate_groups(sample_index, threshold=1.0)
    assert all(len(g) >= 2 for g in exact)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(sample_index, threshold=0)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(sample_index, threshold=1.5)


@pytest.mark.slow  # 6,000 vectors grouped in blocks of ~10 rows: 600 blocks squared (9-10 s)
def test_groups_are_transitive_and_blockwise_on_a_larger_table():
    rng = np.random.default_rng(3)
    n, dim = 6_000, 64
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    # A chain a -> b -> c where a and c are below the threshold but each link is above it.
    a = vectors[10] / np.linalg.norm(vectors[10])
    side = vectors[11] - (vectors[11] @ a) * a
    side /= np.linalg.norm(side)
    angle = np.arccos(0.95)
    vectors[4000] = np.cos(angle) * a + np.sin(angle) * side
    vectors[5999] = np.cos(2 * angle) * a + np.sin(2 * angle) * side  # cos(a, c) ~ 0.805
    # Independent near-copies scattered across blocks.
    pairs = [(1, 2500), (300, 5998), (3000, 3001)]
    for i, j in pairs:
        vectors[j] = vectors[i] + 0.05 * rng.standard_normal(dim, dtype=np.float32)
    ids = [f"r{i:05d}" for i in range(n)]
    index = VectorIndex.from_arrays(ids, vectors, embedding_model="local/visual-embed-v1-256")
    groups = near_duplicate_groups(index, threshold=0.9, block_bytes=200_000)  # ~10 rows per block
    expected = [["r00010", "r04000", "r05999"]] + sorted([sorted([ids[i], ids[j]]) for i, j in pairs])
    assert groups == expected


def test_markdown_report(sample_index):
    groups = near_duplicate_groups(sample_index)
    report = duplicates_report(groups, sample_index, threshold=DEFAULT_DUPLICATE_THRESHOLD)
    assert report.startswith("# Near-duplicate groups")
    assert f"{len(groups)} group(s) of cosine >= 0.90 among {len(sample_index)} images" in report
    assert report.count("## Group ") == len(groups)
    for group in groups:
        for image_id in group:
            assert f"| {image_id} |" in report
    assert "No near-duplicates found." in duplicates_report([], sample_index)


# -- heatmap -----------------------------------------------------------------------------------


def test_heatmap_is_a_drawn_png_that_grows_with_the_images(sample_index, tmp_path):
    sizes = []
    for count in (6, 15, len(sample_index)):
        path = similarity_heatmap(sample_index, tmp_path / "reports" / f"h{count}.png", max_images=count)
        assert path.is_file()
        with Image.open(path) as im:
            assert im.format == "PNG"
            sizes.append(im.size)
            rgb = np.asarray(im.convert("RGB"))
        colours = np.unique(rgb.reshape(-1, 3), axis=0)
        assert len(colours) > 30, "cells, scale and text in many colours"
        # Dark text on white, and the diagonal's cosine-1 colour, are present.
        assert (rgb.sum(axis=2) < 150).any() and (rgb == 255).all(axis=2).any()
        assert (np.abs(rgb.astype(int) - VIRIDIS_TOP).sum(axis=2) < 10).sum() >= count * 100
    heights = [h for _, h in sizes]
    widths = [w for w, _ in sizes]
    assert heights[0] < heights[1] < heights[2] and widths[0] <= widths[1] < widths[2]


def test_heatmap_takes_the_first_images_by_id(sample_index, tmp_path):
    five = similarity_heatmap(sample_index, tmp_path / "five.png", max_images=5)
    all_ = similarity_heatmap(sample_index, tmp_path / "all.png", max_images=1000)
    with Image.open(five) as a, Image.open(all_) as b:
        assert a.size[1] < b.size[1]
    with pytest.raises(ValueError):
        similarity_heatmap(sample_index, tmp_path / "none.png", max_images=0)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_heatmap_default_path(enriched_sample, sample_index):
    result = run_cli("heatmap", "--dataset", enriched_sample.root, "--max-images", "12")
    assert result.exit_code == 0, result.output
    out = f"{enriched_sample.root}/reports/similarity.png"
    flat = "".join(ch for ch in result.output if not ch.isspace() and ch not in "│┃")  # a long path folds
    assert out in flat and f"12 of {len(sample_index)}" in result.output
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_cli_duplicates(enriched_sample, tmp_path):
    report = tmp_path / "dups.md"
    result = run_cli("duplicates", "--dataset", enriched_sample.root, "--markdown", str(report))
    assert result.exit_code == 0, result.output
    for image_id in ("poster-01-crop", "poster-01-jpeg35", "sunset-01-crop", "hills-01-small"):
        assert image_id in result.output
    assert "hills-02" not in result.output
    assert report.read_text().startswith("# Near-duplicate groups")

    result = run_cli("duplicates", "--dataset", enriched_sample.root, "--threshold", "2")
    assert result.exit_code != 0


def test_cli_errors_on_an_empty_dataset(tmp_path):
    for command in ("heatmap", "duplicates"):
        result = run_cli(command, "--dataset", str(tmp_path / "missing"))
        assert result.exit_code == 1 and "error:" in result.output and "no dataset" in result.output
    assert not (tmp_path / "missing").exists()
