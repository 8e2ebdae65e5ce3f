"""Manifests: reading a CSV or Parquet manifest into rows, within the caps on untrusted input.

A manifest needs ``image_id`` and ``path`` columns; its other columns are kept. It is refused
with ``CatalogError`` when it is missing, empty or malformed (blank or duplicate ids, more
fields than its header), or over a cap: ``MAX_MANIFEST_BYTES`` of file, ``MAX_MANIFEST_COLUMNS``,
``MAX_CELL_CHARS`` per cell or column name, ``MAX_ATTRIBUTES_BYTES`` of attributes JSON per row.
Each row's ``path`` becomes an absolute ``source_uri`` against the manifest's folder or prefix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from media_enrichment.catalog.reading import read_bytes
from media_enrichment.catalog.s3 import is_s3
from media_enrichment.errors import CatalogError

__all__ = [
    "MANIFEST_SUFFIXES",
    "MAX_ATTRIBUTES_BYTES",
    "MAX_CELL_CHARS",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_COLUMNS",
    "REQUIRED_COLUMNS",
]

MANIFEST_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
REQUIRED_COLUMNS = ("image_id", "path")

#: Bounds on a manifest, which is untrusted input. 512 MiB of CSV is millions of rows (the sample's
#: rows are under 100 bytes); a cell of 64 Ki characters holds any path (PATH_MAX is 4096) or
#: caption; 256 columns and 64 KiB of attributes JSON per row (stored on every row of the
#: table) are far beyond a real catalogue's extra columns.
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
MAX_MANIFEST_COLUMNS = 256
MAX_CELL_CHARS = 64 * 1024
MAX_ATTRIBUTES_BYTES = 64 * 1024


def _read_manifest(uri: str, *, s3_client: Any, max_bytes: int = MAX_MANIFEST_BYTES) -> pd.DataFrame:
    """The rows of the manifest at ``uri``, ``source_uri`` in place of ``path``.

    ``max_bytes`` is the cap on the file (``load_catalog`` passes the package's
    ``MAX_MANIFEST_BYTES``); a Parquet file's data may decompress to four times that.
    """
    if is_s3(uri):
        base = uri.rsplit("/", 1)[0]
    else:
        path = Path(uri)
        if not path.is_file():
            raise CatalogError(f"manifest not found: {path}")
        base = str(path.resolve().parent)
    raw = read_bytes(uri, s3_client=s3_client, error=CatalogError, max_bytes=max_bytes, _limit="for a manifest")
    try:
        if uri.lower().endswith(".csv"):
            _check_csv_header(raw, uri)
            frame = pd.read_csv(io.BytesIO(raw), dtype={"image_id": str, "path": str}, keep_default_na=False)
            if not isinstance(frame.index, pd.RangeIndex):  # pandas took the first field as an index
                raise CatalogError(f"manifest {uri}: its rows have more fields than its header")
        else:
            _check_parquet_shape(raw, uri, max_bytes)
            frame = pd.read_parquet(io.BytesIO(raw))
    except CatalogError:
        raise
    except pd.errors.EmptyDataError:
        raise CatalogError(f"manifest is empty: {uri}") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise CatalogError(f"manifest {uri} could not be read: {_short(exc)}") from exc
    try:
        return _validate_manifest(frame, uri=uri, base=base)
    except CatalogError:
        raise
    except Exception as exc:  # odd cell types of a hostile file: the catalogue is unusable
        raise CatalogError(f"manifest {uri} could not be read: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _check_csv_header(raw: bytes, uri: str) -> None:
    """Refuse a header of too many columns before pandas builds them (best effort: pandas
    has the last word on what the file holds)."""
    try:
        header = next(csv.reader(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="replace", newline="")))
    except (csv.Error, StopIteration):
        return
    if len(header) > MAX_MANIFEST_COLUMNS:
        raise CatalogError(f"manifest {uri} has {len(header):,} columns, over the cap of {MAX_MANIFEST_COLUMNS}")
    _refuse_repeated_columns(header, uri)  # pandas would rename the second "image_id" to "image_id.1"


def _refuse_repeated_columns(names: Sequence[Any], uri: str) -> None:
    """Refuse a manifest that names a column twice: which of the two is the image's would be a guess."""
    repeated = sorted(name for name, count in Counter(map(str, names)).items() if count > 1)
    if repeated:
        raise CatalogError(f"manifest {uri} names column(s) {', '.join(repeated[:5])} more than once")


def _check_parquet_shape(raw: bytes, uri: str, max_bytes: int = MAX_MANIFEST_BYTES) -> None:
    """Refuse a Parquet manifest of too many columns, or whose data would decompress to far
    more than a manifest may hold (four times ``max_bytes``), from its footer alone."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(raw)).metadata
    if meta.num_columns > MAX_MANIFEST_COLUMNS:
        raise CatalogError(f"manifest {uri} has {meta.num_columns:,} columns, over the cap of {MAX_MANIFEST_COLUMNS}")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > 4 * max_bytes:
        raise CatalogError(f"manifest {uri} holds {size:,} bytes uncompressed, over the cap of {4 * max_bytes:,}")


def _validate_manifest(frame: pd.DataFrame, *, uri: str, base: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(
            f"manifest {uri} lacks column(s) {', '.join(missing)}; it has: {', '.join(map(str, frame.columns)) or 'none'}"
        )
    if len(frame.columns) > MAX_MANIFEST_COLUMNS:
        raise CatalogError(f"manifest {uri} has {len(frame.columns):,} columns, over the cap of {MAX_MANIFEST_COLUMNS}")
    if frame.empty:
        raise CatalogError(f"manifest is empty: {uri} has a header but no rows")
    _check_cells(frame, uri)
    frame = frame.copy()
    for column in REQUIRED_COLUMNS:
        values = frame[column].astype("string").str.strip()
        blank = values.isna() | (values == "")
        if blank.any():
            rows = [int(i) + 2 for i in frame.index[blank][:5]]  # +2: header line, 1-based
            raise CatalogError(f"manifest {uri}: empty {column} on line(s) {rows}")
        frame[column] = values.astype(str)
    duplicated = frame["image_id"][frame["image_id"].duplicated()].unique()
    if len(duplicated):
        shown = ", ".join(sorted(duplicated)[:5])
        raise CatalogError(f"manifest {uri}: {len(duplicated)} duplicate image_id(s), e.g. {shown}")
    if not is_s3(base):
        base = os.path.realpath(base)  # once; each row's own links are resolved when it is read
    frame.insert(1, "source_uri", [_resolve(p, base) for p in frame["path"]])
    return frame.drop(columns=["path"])


def _check_cells(frame: pd.DataFrame, uri: str) -> None:
    """Refuse a cell (or column name) over ``MAX_CELL_CHARS`` characters, and a row whose
    extra columns make more than ``MAX_ATTRIBUTES_BYTES`` of attributes JSON (as the plan
    builds it: ``json.dumps`` of the row's extra columns)."""
    for name in frame.columns:
        if len(str(name)) > MAX_CELL_CHARS:
            raise CatalogError(f"manifest {uri}: a column name of {len(str(name)):,} characters, over the cap of {MAX_CELL_CHARS:,}")
    extras = [c for c in frame.columns if c not in REQUIRED_COLUMNS]
    rows = len(frame)
    estimate = np.zeros(rows, dtype=np.int64)
    for position, name in enumerate(frame.columns):
        column = frame.iloc[:, position]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            lengths = np.full(rows, 32, dtype=np.int64)
        else:
            lengths = np.fromiter(map(len, map(str, column.to_numpy(dtype=object))), dtype=np.int64, count=rows)
        longest = int(lengths.max()) if rows else 0
        if longest > MAX_CELL_CHARS:
            row = int(lengths.argmax()) + 2  # +2: header line, 1-based
            raise CatalogError(
                f"manifest {uri}: column {str(name)[:80]!r} has a cell of {longest:,} characters on line {row}, "
                f"over the cap of {MAX_CELL_CHARS:,}"
            )
        if name in extras:
            estimate += lengths + len(str(name)) + 8
    # JSON escapes a character in at most 12 bytes (a surrogate pair as two \\uXXXX); only rows
    # that could pass the cap are dumped.
    suspects = frame.index[(estimate * 12) > MAX_ATTRIBUTES_BYTES] if extras else []
    for label in suspects:
        record = {k: (None if _is_na(v) else v) for k, v in frame.loc[label, extras].items()}
        size = len(json.dumps(record, default=str, sort_keys=True))
        if size > MAX_ATTRIBUTES_BYTES:
            row = int(frame.index.get_loc(label)) + 2
            raise CatalogError(
                f"manifest {uri}: the extra columns of line {row} make {size:,} bytes of attributes JSON, "
                f"over the cap of {MAX_ATTRIBUTES_BYTES:,}"
            )


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: not a missing value
        return False


def _resolve(path: str, base: str) -> str:
    """A manifest path made absolute against the manifest's (resolved) folder. ``..`` is folded
    lexically and links are left alone: the reader resolves them against the allowed roots."""
    if is_s3(path) or os.path.isabs(path):
        return path
    if is_s3(base):
        return f"{base}/{path.lstrip('/')}"
    return os.path.normpath(os.path.join(base, path))
