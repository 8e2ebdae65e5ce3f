from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from media_enrichment.catalog import load_catalog, read_bytes
from media_enrichment.errors import CatalogError, ImageError


def _png(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_csv_manifest_resolves_relative_paths_and_keeps_extra_columns(tmp_path):
    _png(tmp_path / "img" / "a.png")
    (tmp_path / "m.csv").write_text("image_id,path,sku\nb,/abs/b.png,2\na,img/a.png,1\n")
    catalog = load_catalog(tmp_path / "m.csv")
    assert catalog.kind == "manifest"
    assert list(catalog.frame["image_id"]) == ["a", "b"]
    assert catalog.frame.loc[0, "source_uri"] == str((tmp_path / "img" / "a.png").resolve())
    assert catalog.frame.loc[1, "source_uri"] == "/abs/b.png"
    assert catalog.extra_columns == ["sku"]
    assert catalog.default_batch == "m"


def test_parquet_manifest(tmp_path):
    pd.DataFrame({"image_id": ["x"], "path": ["x.png"], "colour": ["red"]}).to_parquet(tmp_path / "m.parquet")
    catalog = load_catalog(tmp_path / "m.parquet")
    assert catalog.frame.loc[0, "source_uri"].endswith("x.png")
    assert catalog.extra_columns == ["colour"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image_id,file\na,a.png\n", "lacks column(s) path"),
        ("", "empty"),
        ("image_id,path\n", "no rows"),
        ("image_id,path\na,a.png\na,b.png\n", "duplicate image_id"),
        ("image_id,path\na,a.png\n,b.png\n", "empty image_id on line(s) [3]"),
    ],
)
def test_malformed_manifest_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(CatalogError, match=__import__("re").escape(message)):
        load_catalog(tmp_path / "m.csv")


def test_missing_manifest_and_missing_folder(tmp_path):
    with pytest.raises(CatalogError, match="manifest not found"):
        load_catalog(tmp_path / "nope.csv")
    with pytest.raises(CatalogError, match="catalogue not found"):
        load_catalog(tmp_path / "nope")


def test_folder_scan_is_recursive_with_stable_ids(tmp_path):
    _png(tmp_path / "b" / "two.png")
    _png(tmp_path / "one.png")
    (tmp_path / "notes.txt").write_text("not an image")
    _png(tmp_path / ".cache" / "hidden.png")
    first = load_catalog(tmp_path)
    assert list(first.frame["image_id"]) == ["b/two.png", "one.png"]
    assert list(load_catalog(tmp_path).frame["image_id"]) == list(first.frame["image_id"])
    assert first.default_batch == tmp_path.name
    assert list(load_catalog(tmp_path, limit=1).frame["image_id"]) == ["b/two.png"]


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CatalogError, match="no images"):
        load_catalog(tmp_path)


def test_read_bytes_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        read_bytes(str(tmp_path / "missing.png"))
    assert read_bytes(str(_png(tmp_path / "ok.png")))[:4] == b"\x89PNG"


def test_batch_selects_a_manifests_rows(tmp_path):
    (tmp_path / "m.csv").write_text("image_id,path,batch\na,a.png,2026-11-01\nb,b.png,2026-11-02\n")
    assert list(load_catalog(tmp_path / "m.csv", batch="2026-11-02").frame["image_id"]) == ["b"]
    with pytest.raises(CatalogError, match="no rows of batch"):
        load_catalog(tmp_path / "m.csv", batch="1999-01-01")


# -- bounds on a manifest, and what read_bytes refuses -------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image_id,path," + ",".join(f"c{i}" for i in range(300)) + "\n", "302 columns, over the cap of 256"),
        ("image_id,path,notes\na,a.png," + "n" * 70_000 + "\n", "column 'notes' has a cell of 70,000 characters on line 2"),
        ("image_id,path\na," + "p" * 70_000 + "\n", "column 'path' has a cell of 70,000 characters"),
        ("image_id,path\nx,a.png,extra\n", "its rows have more fields than its header"),
        (
            "image_id,path," + ",".join(f"c{i}" for i in range(5)) + "\na,a.png," + ",".join(["v" * 20_000] * 5) + "\n",
            "the extra columns of line 2 make 100,",
        ),
        ("image_id,path\na,a.png\nb,\udcff.png\n", "could not be read"),  # not UTF-8
    ],
)
def test_absurd_manifests_are_refused_with_a_clear_error(tmp_path, content, message):
    (tmp_path / "m.csv").write_bytes(content.encode("utf-8", errors="surrogateescape"))
    with pytest.raises(CatalogError, match=__import__("re").escape(message)):
        load_catalog(tmp_path / "m.csv")


def test_attributes_json_counts_escapes(tmp_path):
    # 20,000 characters that JSON writes as \uXXXX: under the cell cap, over the attributes cap.
    (tmp_path / "m.csv").write_text("image_id,path,notes\na,a.png," + "é" * 20_000 + "\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="120,[0-9]{3} bytes of attributes JSON"):
        load_catalog(tmp_path / "m.csv")


def test_read_bytes_refuses_what_is_not_a_regular_file(tmp_path):
    import os

    from media_enrichment.errors import PathNotAllowedError

    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(PathNotAllowedError, match="a FIFO, not a regular file"):
        read_bytes(str(tmp_path / "fifo.png"))  # would block forever if opened for reading
    with pytest.raises(PathNotAllowedError, match="a directory"):
        read_bytes(str(tmp_path / "dir.png"))
    with pytest.raises(CatalogError, match="a FIFO"):  # a manifest's read: the catalogue's error type
        read_bytes(str(tmp_path / "fifo.png"), error=CatalogError)


def test_a_manifest_that_names_a_column_twice_is_refused(tmp_path):
    # pandas would read the second "image_id" as "image_id.1"; which one names the image is a guess.
    (tmp_path / "0.png").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("batch,image_id,image_id,path\n,0,,0.png\n")
    with pytest.raises(CatalogError, match="image_id more than once"):
        load_catalog(str(manifest))


def test_a_parquet_manifest_that_names_a_column_twice_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "0.png").write_bytes(b"x")
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["0.png"]), pa.array(["b"])], names=["image_id", "path", "image_id"])
    pq.write_table(table, tmp_path / "m.parquet")
    with pytest.raises(CatalogError, match="more than once|could not be read"):  # pyarrow refuses it too
        load_catalog(str(tmp_path / "m.parquet"))
