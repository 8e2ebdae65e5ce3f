"""The sample catalogue generator: deterministic, ~30 images, a manifest, text and near-dups."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from media_enrichment.sample import MANIFEST_COLUMNS, MANIFEST_NAME, POSTER_TEXTS, generate_sample_catalog

#: Each test generates the sample catalogue, or reads the module's (2-8 s a generation).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_sample_catalog(tmp_path_factory.mktemp("sample"), seed=7)


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_manifest_lists_about_thirty_existing_images(manifest: Path) -> None:
    assert manifest.name == MANIFEST_NAME
    with manifest.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == MANIFEST_COLUMNS == ("image_id", "path", "theme", "variant_of")
    rows = _rows(manifest)
    assert 25 <= len(rows) <= 40
    assert len({row["image_id"] for row in rows}) == len(rows)
    for row in rows:
        path = manifest.parent / row["path"]
        assert not Path(row["path"]).is_absolute() and path.is_file(), row
    # Every image file in the tree is in the manifest.
    listed = {row["path"] for row in rows}
    on_disk = {p for p in _files(manifest.parent) if p != MANIFEST_NAME}
    assert on_disk == listed


def test_themes_formats_and_sizes_are_mixed(manifest: Path) -> None:
    rows = _rows(manifest)
    assert {"landscape", "city", "product", "poster", "abstract"} <= {row["theme"] for row in rows}
    formats, orientations = set(), set()
    for row in rows:
        with Image.open(manifest.parent / row["path"]) as im:
            formats.add(im.format)
            width, height = im.size
        expected_ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[im.format]
        assert row["path"].endswith(expected_ext)
        if not row["variant_of"]:
            assert 480 <= min(width, height) and max(width, height) <= 1200, (row, im.size)
        orientations.add("landscape" if width > height else "portrait" if width < height else "square")
    assert formats == {"JPEG", "PNG", "WEBP"}
    assert orientations == {"landscape", "portrait", "square"}


def test_posters_carry_text(manifest: Path) -> None:
    posters = [row for row in _rows(manifest) if row["theme"] == "poster" and not row["variant_of"]]
    assert len(posters) == len(POSTER_TEXTS) >= 4
    assert any("SALE" in " ".join(lines) for lines in POSTER_TEXTS)
    # Large two-colour signs: the two most common colours cover most of the picture.
    for row in posters:
        with Image.open(manifest.parent / row["path"]) as im:
            colours = sorted(im.convert("RGB").quantize(8).getcolors() or [], reverse=True)
        total = sum(count for count, _ in colours)
        assert sum(count for count, _ in colours[:2]) / total > 0.85


def test_variants_are_fabricated_near_duplicates(manifest: Path) -> None:
    rows = _rows(manifest)
    by_id = {row["image_id"]: row for row in rows}
    variants = [row for row in rows if row["variant_of"]]
    assert len(variants) >= 6
    kinds = set()
    for row in variants:
        original = by_id[row["variant_of"]]
        assert not original["variant_of"] and original["theme"] == row["theme"]
        with Image.open(manifest.parent / original["path"]) as a, Image.open(manifest.parent / row["path"]) as b:
            (ow, oh), (vw, vh) = a.size, b.size
            fmt = b.format
        kind = row["image_id"].rsplit("-", 1)[1]
        kinds.add(kind)
        if kind == "crop":
            assert (vw, vh) == (ow * 9 // 10, oh * 9 // 10)
        elif kind == "small":
            assert (vw, vh) == (round(ow * 0.6), round(oh * 0.6))
        elif kind == "jpeg35":
            assert (vw, vh) == (ow, oh) and fmt == "JPEG"
        else:
            assert kind == "shift" and (vw, vh) == (ow, oh)
    assert kinds == {"crop", "small", "jpeg35", "shift"}


def test_same_seed_gives_byte_identical_files(manifest: Path, tmp_path: Path) -> None:
    again = generate_sample_catalog(tmp_path / "again", seed=7)
    assert _files(again.parent) == _files(manifest.parent)


def test_another_seed_draws_other_pictures(manifest: Path, tmp_path: Path) -> None:
    other = generate_sample_catalog(tmp_path / "other", seed=8)
    first, second = _files(manifest.parent), _files(other.parent)
    assert set(first) == set(second)  # the same plan of names...
    differing = [name for name in first if first[name] != second[name]]
    assert len(differing) > len(first) // 2  # ...with other pictures
