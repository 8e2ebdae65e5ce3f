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
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from media_enrichment.errors import (
    CatalogAccessError,
    CatalogError,
    ImageError,
    ImageTooLargeError,
    PathNotAllowedError,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"})
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

_WIDEN = "use --allow-root or MEDIA_ENRICH_ALLOWED_ROOTS to widen them"


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


def _is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


#: S3 error codes no retry can fix, and what to check. A single missing object (NoSuchKey,
#: 404) is not among them: it is that image's failure.
_ACCESS_CODES = {
    "AccessDenied": "access denied", "AllAccessDisabled": "access denied", "403": "access denied",
    "Forbidden": "access denied", "InvalidAccessKeyId": "credentials refused",
    "SignatureDoesNotMatch": "credentials refused", "InvalidToken": "credentials refused",
    "ExpiredToken": "credentials expired", "ExpiredTokenException": "credentials expired",
    "TokenRefreshRequired": "credentials expired", "NoSuchBucket": "no such bucket",
}


def access_error(exc: BaseException, uri: str, *, action: str = "reading") -> CatalogAccessError | None:
    """A boto3 error that no retry can fix (access denied, bad or expired credentials, no such
    bucket, no credentials at all) as one line naming the bucket and the fix; None otherwise.

    Args:
        exc: the error boto3 raised.
        uri: what was being read or listed.
        action: "reading" or "listing".

    Returns:
        The error to raise, or None for an error of this object only (NoSuchKey) or a
        transient one.
    """
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
        TokenRetrievalError,
    )

    bucket = uri[len("s3://") :].split("/", 1)[0]
    permission = "s3:ListBucket" if action == "listing" else "s3:GetObject"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, TokenRetrievalError)):
        kind = "no usable credentials"
    elif isinstance(exc, ClientError):
        kind = _ACCESS_CODES.get(str(exc.response.get("Error", {}).get("Code", "")))
        if kind is None:
            return None
    else:
        return None
    if kind == "no such bucket":
        return CatalogAccessError(f"no such bucket {bucket!r} {action} {uri}: check the bucket name, AWS_REGION and the endpoint")
    return CatalogAccessError(
        f"{kind} {action} {uri}: check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID, or the AwsCredentials block) "
        f"and {permission} on bucket {bucket!r}"
    )


@dataclass(frozen=True)
class Roots:
    """Where a run may read images: local folders (real paths, symlinks resolved) and S3
    buckets with a key prefix ("" for the whole bucket, else ending in "/"). Picklable.

    Build it with ``roots_for``; ``check`` is called by ``read_bytes`` before anything is opened.
    """

    local: tuple[str, ...] = ()
    s3: tuple[tuple[str, str], ...] = ()
    described: str = "none"  # for messages: "the manifest's folder /x; --allow-root /y"

    def check(self, uri: str) -> str:
        """The path to open for ``uri`` (local: its real path), if it is inside the roots.

        Args:
            uri: an absolute local path or an ``s3://bucket/key`` URI.

        Returns:
            The real local path (symlinks resolved), or the S3 URI unchanged.

        Raises:
            PathNotAllowedError: ``uri`` resolves outside every root (``..``, an absolute path
                elsewhere, a symlink whose target leaves them, another bucket or prefix).
        """
        if "\x00" in uri:
            raise PathNotAllowedError(f"{uri!r} has a NUL character: not a path")
        if _is_s3(uri):
            bucket, _, key = uri[len("s3://") :].partition("/")
            if ".." in key.split("/"):
                raise PathNotAllowedError(f"{uri} has a '..' segment: S3 keys are not paths, so it is never read")
            if not any(bucket == b and key.startswith(prefix) for b, prefix in self.s3):
                raise PathNotAllowedError(f"{uri} is outside the allowed roots ({self.described}); {_WIDEN}")
            return uri
        real = _realpath(uri)
        if not any(_within(real, root) for root in self.local):
            via = f" (a link to {real})" if real != os.path.abspath(uri) else ""
            raise PathNotAllowedError(f"{uri}{via} is outside the allowed roots ({self.described}); {_WIDEN}")
        return real


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _realpath(uri: str) -> str:
    """``os.path.realpath(uri)``, with the real path of each folder resolved once per process
    (a catalogue's images share few folders). A folder swapped for a link after that is still
    caught: the reader checks the real path of the file it opened before reading it."""
    folder, name = os.path.split(os.path.abspath(uri))
    if name in ("", ".", ".."):
        return os.path.realpath(uri)
    candidate = os.path.join(_real_folder(folder), name)
    return os.path.realpath(candidate) if os.path.islink(candidate) else candidate


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _s3_root(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def roots_for(source: str | os.PathLike[str], allowed: tuple[str, ...] | list[str] = ()) -> Roots:
    """The roots a catalogue's images are read in: its own, then the allowed ones.

    A manifest's own root is its folder (symlinks resolved) or, on S3, its bucket and the key
    prefix it sits under; a folder's is the folder; an S3 prefix's is that bucket and prefix.
    Relative local roots are taken from the current folder, now (a worker elsewhere gets them
    resolved).

    Args:
        source: the catalogue (manifest, folder or ``s3://`` prefix).
        allowed: further folders or ``s3://bucket/prefix`` roots (the ``allowed_roots`` setting).

    Returns:
        The roots.
    """
    text = os.fspath(source)
    local: list[str] = []
    s3: list[tuple[str, str]] = []
    own: list[str] = []
    if text:
        is_manifest = PurePosixPath(text).suffix.lower() in MANIFEST_SUFFIXES
        if _is_s3(text):
            bucket, root = _s3_root(text.rsplit("/", 1)[0] + "/" if is_manifest else text)
            s3.append((bucket, root))
            own.append(f"the {'manifest' if is_manifest else 'catalogue'}'s prefix s3://{bucket}/{root}")
        else:
            path = Path(text).resolve()
            folder = str(path.parent if is_manifest else path)
            local.append(folder)
            own.append(f"the manifest's folder {folder}" if is_manifest else f"the folder {folder}")
    for root in allowed:
        if _is_s3(root):
            s3.append(_s3_root(root))
        else:
            local.append(os.path.realpath(os.path.expanduser(root)))
    if allowed:
        own.append("the allowed roots " + ", ".join(allowed))
    return Roots(
        local=tuple(dict.fromkeys(local)), s3=tuple(dict.fromkeys(s3)), described="; ".join(own) or "none"
    )


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise CatalogError(f"not an S3 URI: {uri!r}")
    return bucket, key


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
        frame = _read_manifest(text, s3_client=s3_client)
        kind = "manifest"
    elif _is_s3(text):
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


def _read_manifest(uri: str, *, s3_client: Any) -> pd.DataFrame:
    if _is_s3(uri):
        base = uri.rsplit("/", 1)[0]
    else:
        path = Path(uri)
        if not path.is_file():
            raise CatalogError(f"manifest not found: {path}")
        base = str(path.resolve().parent)
    raw = read_bytes(uri, s3_client=s3_client, error=CatalogError, max_bytes=MAX_MANIFEST_BYTES, _limit="for a manifest")
    try:
        if uri.lower().endswith(".csv"):
            _check_csv_header(raw, uri)
            frame = pd.read_csv(io.BytesIO(raw), dtype={"image_id": str, "path": str}, keep_default_na=False)
            if not isinstance(frame.index, pd.RangeIndex):  # pandas took the first field as an index
                raise CatalogError(f"manifest {uri}: its rows have more fields than its header")
        else:
            _check_parquet_shape(raw, uri)
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


def _check_parquet_shape(raw: bytes, uri: str) -> None:
    """Refuse a Parquet manifest of too many columns, or whose data would decompress to far
    more than a manifest may hold, from its footer alone."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(raw)).metadata
    if meta.num_columns > MAX_MANIFEST_COLUMNS:
        raise CatalogError(f"manifest {uri} has {meta.num_columns:,} columns, over the cap of {MAX_MANIFEST_COLUMNS}")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > 4 * MAX_MANIFEST_BYTES:
        raise CatalogError(f"manifest {uri} holds {size:,} bytes uncompressed, over the cap of {4 * MAX_MANIFEST_BYTES:,}")


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
    if not _is_s3(base):
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
    if _is_s3(path) or os.path.isabs(path):
        return path
    if _is_s3(base):
        return f"{base}/{path.lstrip('/')}"
    return os.path.normpath(os.path.join(base, path))


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
    bucket, prefix = _split_s3(uri)
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


def read_bytes(
    uri: str,
    *,
    s3_client: Any = None,
    error: type[Exception] = ImageError,
    roots: Roots | None = None,
    max_bytes: int | None = None,
    _limit: str = "(max_image_bytes, MEDIA_ENRICH_MAX_IMAGE_BYTES)",
) -> bytes:
    """Read one object, local or ``s3://``, refusing what the run may not read before reading it.

    Args:
        uri: an absolute local path or an ``s3://bucket/key`` URI.
        s3_client: a boto3 S3 client for ``s3://`` URIs.
        error: the exception type raised when the object cannot be read.
        roots: where reading is allowed; None: anywhere (the catalogue's own manifest).
        max_bytes: refuse larger objects: from their size before reading (``os.stat``, S3's
            ContentLength), and by reading at most one byte more than this.

    Returns:
        The object's bytes.

    Raises:
        PathNotAllowedError: outside ``roots``, or not a regular file (a directory, FIFO,
            device); nothing was opened (``error`` itself when it is not an ``ImageError``).
        ImageTooLargeError: over ``max_bytes`` (likewise).
        CatalogAccessError: S3 refused the credentials, denied access or has no such bucket
            (whatever ``error`` is: no other object could be read either).
    """
    refused = _refusal(error, PathNotAllowedError)
    too_large = _refusal(error, ImageTooLargeError)
    target = roots.check(uri) if roots is not None else uri

    def over(size: int) -> Exception:
        return too_large(f"{uri} is {size:,} bytes or more, over the limit of {max_bytes:,} bytes {_limit}; not read")

    if _is_s3(target):
        if s3_client is None:
            raise error(f"an S3 client is needed to read {uri}")
        bucket, key = _split_s3(target)
        try:
            response = s3_client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:  # botocore ClientError (NoSuchKey, AccessDenied), connection errors
            raise access_error(exc, uri) or error(f"could not read {uri}: {exc}") from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if max_bytes is not None and isinstance(length, int) and length > max_bytes:
                raise over(length)
            try:
                data = _read_capped(body.read, max_bytes, length if isinstance(length, int) else 0)
            except Exception as exc:  # the connection broke while reading the body
                raise error(f"could not read {uri}: {exc}") from exc
        finally:
            body.close()
        if max_bytes is not None and len(data) > max_bytes:
            raise over(len(data))
        return data
    try:
        before = os.stat(target)
    except FileNotFoundError:
        raise error(f"file not found: {uri}") from None
    except (OSError, ValueError) as exc:
        raise error(f"could not read {uri}: {getattr(exc, 'strerror', None) or exc}") from exc
    kind = _not_regular(before.st_mode)
    if kind:
        raise refused(f"{uri} is {kind}, not a regular file: not opened")
    if max_bytes is not None and before.st_size > max_bytes:
        raise over(before.st_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if roots is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # the real path was checked: a link now is a swap
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        raise error(f"could not read {uri}: {exc.strerror or exc}") from exc
    try:
        now = os.fstat(fd)
        if _not_regular(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise refused(f"{uri} was replaced while being opened: not read")
        if roots is not None:
            roots.check(_opened_path(fd, target))  # a folder on the way swapped for a link
        data = _read_capped(lambda n: os.read(fd, n), max_bytes, now.st_size)
    except OSError as exc:
        raise error(f"could not read {uri}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise over(len(data))  # it grew since it was measured
    return data


def _refusal(error: type[Exception], kind: type[ImageError]) -> Callable[[str], Exception]:
    """The refusal ``kind`` for an image read, or ``error`` itself for anything else (a manifest)."""
    return kind if issubclass(error, ImageError) else error


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def _opened_path(fd: int, fallback: str) -> str:
    """The path the kernel opened (Linux: /proc/self/fd), else the path asked for."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fallback


def _read_capped(read: Callable[[int], bytes], limit: int | None, expected: int) -> bytes:
    """Read until the end or one byte past ``limit``, in pieces sized from the ``expected`` size."""
    parts: list[bytes] = []
    total = 0
    while True:
        want = max(64 * 1024, expected + 1 - total)
        want = min(want, 8 * 1024 * 1024) if limit is None else min(want, 8 * 1024 * 1024, limit + 1 - total)
        if want <= 0:
            break
        part = read(want)
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)
