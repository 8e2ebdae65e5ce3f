"""Parquet files at a location that is a local path or an ``s3://`` URI.

The staging area lives beside the dataset: ``<root>/_staging`` on the local disk or on S3, so
that chunk tasks on other machines (Dask workers) and a run resumed elsewhere see the same
files. S3 access goes through pyarrow's filesystem with the standard AWS settings (environment,
profile, instance role; ``AWS_ENDPOINT_URL`` for an S3-compatible endpoint), as delta-rs does
for the tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def is_remote(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str | Path, name: str) -> str:
    """``location/name`` for a folder path or a URI."""
    return f"{str(location).rstrip('/')}/{name}" if is_remote(location) else str(Path(location) / name)


#: Storage options (delta-rs's names, ``aws.storage_options``): credentials for S3 when they
#: do not come from the environment, e.g. from an AwsCredentials block.
Options = Mapping[str, str] | None


def _resolve(location: str | Path, options: Options = None) -> tuple[pafs.FileSystem, str]:
    if not is_remote(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    if not options:
        return pafs.FileSystem.from_uri(str(location))
    scheme, _, path = str(location).partition("://")
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"storage options apply to s3:// locations only, not {location}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    fs = pafs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint,
    )
    return fs, path


def make_dirs(location: str | Path) -> None:
    """Create a local folder (S3 has no folders to create)."""
    if not is_remote(location):
        Path(location).mkdir(parents=True, exist_ok=True)


def exists(location: str | Path, *, options: Options = None) -> bool:
    fs, path = _resolve(location, options)
    return fs.get_file_info(path).type == pafs.FileType.File


def write_parquet(table: pa.Table, location: str | Path, *, options: Options = None) -> None:
    """Write a Parquet file so that it appears whole or not at all.

    Locally: a temporary file, then a rename. On S3 an object becomes visible only once its
    upload is complete, so the file is written in place.
    """
    if is_remote(location):
        fs, path = _resolve(location, options)
        pq.write_table(table, path, filesystem=fs)
        return
    tmp = f"{location}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, location)


def parquet_file(location: str | Path, *, options: Options = None) -> pq.ParquetFile:
    """An open Parquet file, to read its metadata or stream its batches."""
    fs, path = _resolve(location, options)
    return pq.ParquetFile(fs.open_input_file(path))


def read_parquet(
    location: str | Path, *, columns: list[str] | None = None, schema: pa.Schema | None = None, options: Options = None
) -> pa.Table:
    fs, path = _resolve(location, options)
    return pq.read_table(path, columns=columns, schema=schema, filesystem=fs)


def delete(location: str | Path, *, options: Options = None) -> None:
    """Delete a file; a missing one is not an error."""
    fs, path = _resolve(location, options)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass
