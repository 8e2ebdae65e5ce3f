"""Random manifests: ``load_catalog`` returns a catalogue or raises ``CatalogError``, never anything
else, and quickly, whatever the bytes (a manifest is untrusted input)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from media_enrichment import catalog as catalog_module
from media_enrichment.catalog import Catalog, load_catalog
from media_enrichment.errors import CatalogError
from tests.helpers import fuzz_settings

#: Seconds one load may take, far above what any of these need (a bound, not a benchmark).
BOUND_S = 3.0

FUZZ = fuzz_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _load(tmp_path: Path, name: str, data: bytes) -> Catalog | CatalogError:
    path = tmp_path / name
    path.write_bytes(data)
    started = time.perf_counter()
    try:
        result: Catalog | CatalogError = load_catalog(path)
    except CatalogError as exc:
        result = exc
    # Anything else propagates and fails the test.
    assert time.perf_counter() - started < BOUND_S, f"loading took {time.perf_counter() - started:.1f} s"
    if isinstance(result, Catalog):
        frame = result.frame
        assert list(frame.columns[:2]) == ["image_id", "source_uri"]
        assert frame["image_id"].is_unique and (frame["image_id"] != "").all()
    return result


_cells = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(',"\n\r\x00 ;\\\'\t'), max_size=10),
    st.sampled_from(["../../etc/passwd", "/etc/hostname", "s3://other/x.png", "a.png", "", "NA", "null", "nan"]),
    st.integers().map(str),
)
_names = st.one_of(st.sampled_from(["image_id", "path", "batch", "sku", "image_id", ""]), st.text(max_size=8))


@st.composite
def _csv_manifests(draw) -> bytes:
    columns = draw(st.lists(_names, min_size=0, max_size=6))
    if draw(st.booleans()):
        columns = ["image_id", "path", *columns]
    rows = draw(st.lists(st.lists(_cells, min_size=0, max_size=len(columns) + 2), max_size=8))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):  # cut anywhere, or a stray quote
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["", '"', "\n", ",,,"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(data=_csv_manifests())
def test_random_csv_manifests(tmp_path, data):
    _load(tmp_path, "m.csv", data)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_as_csv_and_parquet(tmp_path, data):
    _load(tmp_path, "m.csv", data)
    _load(tmp_path, "m.parquet", data)
    _load(tmp_path, "m.parquet", b"PAR1" + data + b"PAR1")


@fuzz_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(catalog_module.MAX_MANIFEST_COLUMNS - 3, catalog_module.MAX_MANIFEST_COLUMNS + 3),
    huge=st.sampled_from([0, 1, catalog_module.MAX_CELL_CHARS, catalog_module.MAX_CELL_CHARS + 1]),
    where=st.sampled_from(["image_id", "path", "extra", "header"]),
)
def test_wide_manifests_and_huge_cells(tmp_path, width, huge, where):
    columns = ["image_id", "path"] + [f"c{i}" for i in range(width - 2)]
    row = ["a", "a.png"] + ["v"] * (width - 2)
    cell = "x" * huge
    if where == "header":
        columns[-1] = cell or "last"
    else:
        row[{"image_id": 0, "path": 1, "extra": -1}[where]] = cell or row[{"image_id": 0, "path": 1, "extra": -1}[where]]
    out = io.StringIO()
    csv.writer(out).writerows([columns, row])
    result = _load(tmp_path, "m.csv", out.getvalue().encode())
    too_wide = width > catalog_module.MAX_MANIFEST_COLUMNS
    too_long = huge > catalog_module.MAX_CELL_CHARS
    # A cell or a column name at the cap in an extra column, with the row's other extras, is over
    # the attributes cap (the JSON holds each extra column's name and value).
    too_much = where in ("extra", "header") and huge == catalog_module.MAX_CELL_CHARS
    if too_wide or too_long or too_much:
        assert isinstance(result, CatalogError), (width, huge, where)
        assert "over the cap" in str(result)
        if too_much and not too_wide:
            assert "bytes of attributes JSON" in str(result)
    else:
        assert isinstance(result, Catalog), result


@fuzz_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frame=st.lists(
        st.tuples(st.text(min_size=1, max_size=5), st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text(max_size=5))),
        min_size=0,
        max_size=6,
    ),
)
def test_random_parquet_manifests(tmp_path, frame):
    table = pd.DataFrame(frame, columns=["image_id", "path", "extra"])
    out = io.BytesIO()
    table.astype({"extra": object}).astype(str).to_parquet(out)
    _load(tmp_path, "m.parquet", out.getvalue())


def test_a_multi_megabyte_cell_is_refused_quickly(tmp_path):
    big = "y" * (5 * 1024 * 1024)
    result = _load(tmp_path, "m.csv", f"image_id,path,notes\na,a.png,{big}\n".encode())
    assert isinstance(result, CatalogError) and "column 'notes' has a cell of 5,242,880 characters" in str(result)


def test_a_header_of_a_million_columns_is_refused_before_pandas_builds_them(tmp_path):
    header = ",".join(f"c{i}" for i in range(1_000_000))
    result = _load(tmp_path, "m.csv", f"image_id,path,{header}\n".encode())
    assert isinstance(result, CatalogError) and "1,000,002 columns, over the cap of 256" in str(result)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_manifest_that_is_not_a_regular_file(tmp_path, suffix):
    import os

    os.mkfifo(tmp_path / f"m{suffix}")
    with pytest.raises(CatalogError):  # not hanging on the FIFO is the other half of the test
        load_catalog(tmp_path / f"m{suffix}")
