"""Reading catalogues: CSV or Parquet manifests, folders, and S3 prefixes.

Every catalogue becomes one DataFrame with at least ``image_id`` and ``source_uri`` (an absolute
local path or an ``s3://`` URI), plus the manifest's extra columns. A malformed catalogue raises
``CatalogError`` before any model is called; a missing image does not: it is found when the image
is read, and becomes a failure row. S3 refusing access (denied, bad or expired credentials, no such
bucket) raises ``CatalogAccessError`` wherever it happens: no image could be read, so the run stops.

A manifest is untrusted input. What its rows name is read only inside the run's ``Roots`` (the
manifest's folder or prefix, a scanned folder or prefix, and the ``allowed_roots`` setting):
``read_bytes`` refuses anything else, and anything that is not a regular file, with
``PathNotAllowedError`` before opening it, and files over a byte limit with
``ImageTooLargeError`` before and while reading. The manifest itself is bounded too
(``MAX_MANIFEST_BYTES``, ``MAX_MANIFEST_COLUMNS``, ``MAX_CELL_CHARS``, ``MAX_ATTRIBUTES_BYTES``).

This package holds ``Catalog`` and ``load_catalog``; its modules: ``manifest`` (CSV and Parquet
manifests and their caps), ``listing`` (a folder's or an S3 prefix's images), ``roots``
(``Roots``, ``roots_for``: where images may be read), ``reading`` (``read_bytes``: bounded reads
of one object) and ``s3`` (S3 URIs, ``access_error``). It exports the names the rest of the
library uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from media_enrichment.catalog import manifest
from media_enrichment.catalog.listing import IMAGE_SUFFIXES, _scan_folder, _scan_s3_prefix
from media_enrichment.catalog.manifest import (
    MANIFEST_SUFFIXES,
    MAX_ATTRIBUTES_BYTES,
    MAX_CELL_CHARS,
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_COLUMNS,
    REQUIRED_COLUMNS,
    _read_manifest,
)
from media_enrichment.catalog.reading import read_bytes
from media_enrichment.catalog.roots import Roots, roots_for
from media_enrichment.catalog.s3 import access_error, is_s3
from media_enrichment.errors import CatalogError

__all__ = ["IMAGE_SUFFIXES", "Catalog", "Roots", "access_error", "load_catalog", "read_bytes", "roots_for"]
__all__ += manifest.__all__  # MANIFEST_SUFFIXES, REQUIRED_COLUMNS and the caps


@dataclass(frozen=True)
class Catalog:
    """A loaded catalogue: its rows and where they came from."""

    frame: pd.DataFrame  # image_id, source_uri, then extra manifest columns
    source: str
    kind: str  # "manifest", "folder" or "s3-prefix"

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("image_id", "source_uri")]

    @property
    def default_batch(self) -> str:
        """A batch label derived from the source: the manifest's stem or the folder/prefix name."""
        path = PurePosixPath(self.source.rstrip("/").split("://", 1)[-1])
        return path.stem if self.kind == "manifest" else (path.name or "catalog")


def load_catalog(
    source: str | os.PathLike[str], *, s3_client: Any = None, limit: int | None = None, batch: str | None = None
) -> Catalog:
    """Load a catalogue from a manifest file, a folder or an S3 prefix.

    Args:
        source: a ``.csv``/``.parquet`` manifest (local or ``s3://``), a local folder (scanned
            recursively), or an ``s3://bucket/prefix/`` holding images.
        s3_client: a boto3 S3 client, needed only for ``s3://`` sources.
        limit: keep only the first ``limit`` rows (in image_id order).
        batch: for a manifest with a ``batch`` column, keep only that batch's rows.

    Returns:
        The catalogue, rows sorted by ``image_id``.

    Raises:
        CatalogError: the source is missing, empty or malformed.
    """
    text = os.fspath(source)
    suffix = PurePosixPath(text).suffix.lower()
    if suffix in MANIFEST_SUFFIXES:
        # This package's MAX_MANIFEST_BYTES, read now: the cap callers (and tests) set here.
        frame = _read_manifest(text, s3_client=s3_client, max_bytes=MAX_MANIFEST_BYTES)
        kind = "manifest"
    elif is_s3(text):
        frame = _scan_s3_prefix(text, s3_client=s3_client)
        kind = "s3-prefix"
    else:
        frame = _scan_folder(Path(text))
        kind = "folder"
    if batch is not None and "batch" in frame.columns:
        labels = frame["batch"].astype(str)
        if not (labels == batch).any():
            known = sorted(set(labels))
            shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            raise CatalogError(f"no rows of batch {batch!r} in {text}; its batches: {shown}")
        frame = frame[labels == batch]
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    if limit is not None:
        frame = frame.head(limit).reset_index(drop=True)
    return Catalog(frame=frame, source=text, kind=kind)
