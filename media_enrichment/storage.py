"""Parquet files at a location that is a local path or an ``s3://`` URI.

The staging area lives beside the dataset: ``<root>/_staging`` on the local disk or on S3, so
that chunk tasks on other machines (Dask workers) and a run resumed elsewhere see the same
files. S3 access goes through pyarrow's filesystem with the standard AWS settings (environment,
profile, instance role; ``AWS_ENDPOINT_URL`` for an S3-compatible endpoint), as delta-rs does
for the tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from media_enrichment.errors import DatasetLocationError


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
        # Absolute, not resolved: resolving is an lstat per path component on every call, and
        # the local file system opens a path through its links anyway.
        return pafs.LocalFileSystem(), os.path.abspath(location)
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


#: How S3 says that no retry can help (no such bucket, access denied, refused or expired
#: credentials): pyarrow's error names, then S3's own codes as boto3 reports them.
_FATAL_S3_MARKERS = {
    "no such bucket": ("NO_SUCH_BUCKET", "NoSuchBucket"),
    "credentials refused": (
        "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch",
        "EXPIRED_TOKEN", "ExpiredToken", "token has expired", "InvalidToken", "INVALID_CLIENT_TOKEN_ID",
    ),
    "access denied": ("ACCESS_DENIED", "AccessDenied", "HTTP status 403", "AllAccessDisabled"),
}
#: Local errors no retry can fix: a file where a folder should be, no permission.
_FATAL_LOCAL = (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def _bucket(location: str | Path) -> str:
    return str(location).split("://", 1)[-1].split("/", 1)[0]


def location_error(exc: BaseException, location: str | Path) -> DatasetLocationError | None:
    """``exc`` as a ``DatasetLocationError`` when no retry can fix it, else None (a network
    error, throttling, a missing file)."""
    if isinstance(exc, DatasetLocationError):
        return exc
    if isinstance(exc, _FATAL_LOCAL):
        return DatasetLocationError(f"cannot write the dataset at {location}: {exc.strerror or exc}")
    if not (is_remote(location) and isinstance(exc, OSError)):
        return None
    text = str(exc)
    kind = next((k for k, markers in _FATAL_S3_MARKERS.items() if any(m in text for m in markers)), None)
    bucket = _bucket(location)
    if kind == "no such bucket":
        return DatasetLocationError(
            f"no such bucket {bucket!r} for the dataset at {location}: check the bucket name, AWS_REGION and the endpoint"
        )
    if kind is not None:
        return DatasetLocationError(
            f"{kind} writing {location}: check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID, or the AwsCredentials "
            f"block) and s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on bucket {bucket!r}"
        )
    return None


@contextmanager
def _fatal_errors_translated(location: str | Path) -> Iterator[None]:
    """Raise ``DatasetLocationError`` for an error no retry can fix; let the others through."""
    try:
        yield
    except OSError as exc:
        error = location_error(exc, location)
        if error is None:
            raise
        raise error from exc


def make_dirs(location: str | Path) -> None:
    """Create a local folder (S3 has no folders to create)."""
    if not is_remote(location):
        with _fatal_errors_translated(location):
            Path(location).mkdir(parents=True, exist_ok=True)


def remove_empty_parent(location: str | Path) -> None:
    """Remove the local folder holding a file if it is empty now (S3 has no folders); a folder
    still in use stays."""
    if not is_remote(location):
        try:
            os.rmdir(os.path.dirname(location))
        except OSError:  # not empty (another writer's file), already gone, or not ours to remove
            pass


def exists(location: str | Path, *, options: Options = None) -> bool:
    fs, path = _resolve(location, options)
    with _fatal_errors_translated(location):
        return fs.get_file_info(path).type == pafs.FileType.File


def list_files(folder: str | Path, *, prefix: str = "", suffix: str = "", options: Options = None) -> list[str]:
    """Files directly in a folder (or under an ``s3://`` prefix), by name.

    Args:
        folder: a local folder or an ``s3://`` URI; a missing one holds no files.
        prefix: keep names that start with this.
        suffix: keep names that end with this.
        options: S3 storage options.

    Returns:
        Their locations (``join(folder, name)``), sorted by name.
    """
    fs, path = _resolve(folder, options)
    with _fatal_errors_translated(folder):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    names = sorted(
        i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.startswith(prefix) and i.base_name.endswith(suffix)
    )
    return [join(folder, name) for name in names]


def write_parquet(
    table: pa.Table, location: str | Path, *, options: Options = None, use_dictionary: bool | list[str] = True
) -> None:
    """Write a Parquet file so that it appears whole or not at all.

    Locally: a temporary file of this writer's own in the file's folder (created if missing),
    then a rename. On S3 an object becomes visible only once its upload is complete; the file
    is encoded in memory first and then sent, so that an upload cut short can never leave a
    readable file holding only part of the rows (its footer comes last). Errors no retry can
    fix (a file where a folder should be, no permission, no bucket, access denied) raise
    ``DatasetLocationError``.
    ``use_dictionary`` is ``pyarrow.parquet.write_table``'s: True, False, or the columns to
    dictionary-encode.
    """
    with _fatal_errors_translated(location):
        if is_remote(location):
            fs, path = _resolve(location, options)
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer, use_dictionary=use_dictionary)
            with fs.open_output_stream(path) as out:
                out.write(buffer.getvalue())
            return
        tmp = f"{location}.{uuid.uuid4().hex}.tmp"  # unique: two writers never share one
        try:
            for attempt in range(3):
                Path(location).parent.mkdir(parents=True, exist_ok=True)
                try:
                    pq.write_table(table, tmp, use_dictionary=use_dictionary)
                    break
                except FileNotFoundError:
                    # the folder was removed as empty (``remove_empty_parent``) by a run that
                    # committed the same chunk, between the mkdir and the write: once more
                    if attempt == 2:
                        raise
            os.replace(tmp, location)  # the folder holds tmp now: it is not empty, so it stays
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def parquet_file(location: str | Path, *, options: Options = None) -> pq.ParquetFile:
    """An open Parquet file, to read its metadata or stream its batches (close it when done)."""
    fs, path = _resolve(location, options)
    with _fatal_errors_translated(location):
        return pq.ParquetFile(fs.open_input_file(path))


def read_parquet(
    location: str | Path, *, columns: list[str] | None = None, schema: pa.Schema | None = None, options: Options = None
) -> pa.Table:
    fs, path = _resolve(location, options)
    with _fatal_errors_translated(location):
        return pq.read_table(path, columns=columns, schema=schema, filesystem=fs)


def write_bytes(location: str | Path, data: bytes, *, options: Options = None) -> None:
    """Write a small file whole (locally: a temporary file, then a rename; on S3: one upload)."""
    with _fatal_errors_translated(location):
        if is_remote(location):
            fs, path = _resolve(location, options)
            with fs.open_output_stream(path) as out:
                out.write(data)
            return
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{location}.{uuid.uuid4().hex}.tmp"
        try:
            Path(tmp).write_bytes(data)
            os.replace(tmp, location)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_bytes(location: str | Path, *, options: Options = None) -> bytes:
    """A small file's content (``FileNotFoundError`` when it is gone)."""
    fs, path = _resolve(location, options)
    with _fatal_errors_translated(location), fs.open_input_stream(path) as stream:
        return stream.read()


def delete(location: str | Path, *, options: Options = None) -> None:
    """Delete a file; a missing one is not an error."""
    fs, path = _resolve(location, options)
    with _fatal_errors_translated(location):
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass


def check_writable(folder: str | Path, *, options: Options = None) -> None:
    """Check, before any work, that files can be created in a folder or under an S3 prefix.

    Locally nothing is created: the folder, or its nearest existing parent, must be a
    writable folder. On S3 a small probe object is written under the prefix and deleted,
    which checks the bucket, the credentials and the write permission at once.

    Args:
        folder: a local folder or an ``s3://`` URI.
        options: S3 storage options.

    Raises:
        DatasetLocationError: the location cannot be written, with the reason and the fix.
    """
    if not is_remote(folder):
        path = Path(folder).absolute()
        try:
            existing = next(p for p in (path, *path.parents) if p.exists())
        except PermissionError as exc:
            raise DatasetLocationError(f"cannot write the dataset at {folder}: {exc.strerror or exc}") from exc
        if not existing.is_dir():
            where = "is a file" if existing == path else f"is inside {existing}, which is a file"
            raise DatasetLocationError(f"the dataset location {folder} {where}: choose a folder (--dataset)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DatasetLocationError(f"cannot write the dataset at {folder}: {existing} is not writable by this user")
        return
    probe = join(folder, f".write-check-{uuid.uuid4().hex}")
    fs, path = _resolve(probe, options)
    try:
        with fs.open_output_stream(path) as out:
            out.write(b"")
        fs.delete_file(path)
    except OSError as exc:
        error = location_error(exc, folder)
        raise (error or DatasetLocationError(f"cannot write the dataset at {folder}: {exc}")) from exc
