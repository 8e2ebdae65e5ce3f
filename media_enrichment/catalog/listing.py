"""Listing catalogues without a manifest: the images of a local folder or of an S3 prefix.

A folder is scanned recursively, an S3 prefix listed page by page; files with an image suffix
(``IMAGE_SUFFIXES``) become rows whose ``image_id`` is the path below the folder or prefix.
Hidden files and folders (a name starting with ".") are skipped.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from media_enrichment.catalog.s3 import access_error, split_s3
from media_enrichment.errors import CatalogError

__all__ = ["IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"})


def _scan_folder(folder: Path) -> pd.DataFrame:
    if not folder.exists():
        raise CatalogError(f"catalogue not found: {folder} (expected a manifest, a folder or s3:// prefix)")
    if not folder.is_dir():
        raise CatalogError(f"not a manifest (.csv/.parquet) nor a folder: {folder}")
    root = folder.resolve()
    paths = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, root)
    )
    if not paths:
        raise CatalogError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return pd.DataFrame(
        {"image_id": [p.relative_to(root).as_posix() for p in paths], "source_uri": [str(p) for p in paths]}
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _scan_s3_prefix(uri: str, *, s3_client: Any) -> pd.DataFrame:
    if s3_client is None:
        raise CatalogError(f"an S3 client is needed to list {uri}")
    bucket, prefix = split_s3(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    ids: list[str] = []
    uris: list[str] = []
    try:
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                relative = key[len(prefix) :]
                if PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES and not relative.startswith("."):
                    ids.append(relative)
                    uris.append(f"s3://{bucket}/{key}")
    except Exception as exc:  # botocore ClientError, NoCredentialsError, endpoint errors
        raise access_error(exc, uri, action="listing") or CatalogError(f"could not list {uri}: {exc}") from exc
    if not ids:
        raise CatalogError(f"no images under {uri}")
    return pd.DataFrame({"image_id": ids, "source_uri": uris})
