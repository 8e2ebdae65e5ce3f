"""Reading catalogues: CSV or Parquet manifests, folders, and S3 prefixes.

Every catalogue becomes one DataFrame with at least ``image_id`` and ``source_uri`` (an absolute
local path or an ``s3://`` URI), plus the manifest's extra columns. A malformed catalogue raises
``CatalogError`` before any model is called; a missing image does not: it is found when the image
is read, and becomes a failure row. S3 refusing access (denied, bad or expired credentials, no such
bucket) raises ``CatalogAccessError`` wherever it happens: no image could be read, so the run stops.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from media_enrichment.errors import CatalogAccessError, CatalogError, ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"})
MANIFEST_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
REQUIRED_COLUMNS = ("image_id", "path")


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
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError, TokenRetrievalError

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
        raw = read_bytes(uri, s3_client=s3_client, error=CatalogError)
        base = uri.rsplit("/", 1)[0]
        handle: Any = io.BytesIO(raw)
    else:
        path = Path(uri)
        if not path.is_file():
            raise CatalogError(f"manifest not found: {path}")
        base = str(path.resolve().parent)
        handle = path
    try:
        if uri.lower().endswith(".csv"):
            frame = pd.read_csv(handle, dtype={"image_id": str, "path": str}, keep_default_na=False)
        else:
            frame = pd.read_parquet(handle)
    except pd.errors.EmptyDataError:
        raise CatalogError(f"manifest is empty: {uri}") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise CatalogError(f"manifest {uri} could not be read: {exc}") from exc
    return _validate_manifest(frame, uri=uri, base=base)


def _validate_manifest(frame: pd.DataFrame, *, uri: str, base: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(
            f"manifest {uri} lacks column(s) {', '.join(missing)}; it has: {', '.join(map(str, frame.columns)) or 'none'}"
        )
    if frame.empty:
        raise CatalogError(f"manifest is empty: {uri} has a header but no rows")
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
    frame.insert(1, "source_uri", [_resolve(p, base) for p in frame["path"]])
    return frame.drop(columns=["path"])


def _resolve(path: str, base: str) -> str:
    if _is_s3(path) or os.path.isabs(path):
        return path
    if _is_s3(base):
        return f"{base}/{path.lstrip('/')}"
    return str(Path(base, path).resolve())


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


def read_bytes(uri: str, *, s3_client: Any = None, error: type[Exception] = ImageError) -> bytes:
    """Read one object, local or ``s3://``.

    Args:
        uri: an absolute local path or an ``s3://bucket/key`` URI.
        s3_client: a boto3 S3 client for ``s3://`` URIs.
        error: the exception type raised when the object cannot be read.

    Returns:
        The object's bytes.

    Raises:
        CatalogAccessError: S3 refused the credentials, denied access or has no such bucket
            (whatever ``error`` is: no other object could be read either).
    """
    if _is_s3(uri):
        if s3_client is None:
            raise error(f"an S3 client is needed to read {uri}")
        bucket, key = _split_s3(uri)
        try:
            return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore ClientError (NoSuchKey, AccessDenied), connection errors
            raise access_error(exc, uri) or error(f"could not read {uri}: {exc}") from exc
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise error(f"file not found: {uri}") from None
    except OSError as exc:
        raise error(f"could not read {uri}: {exc.strerror or exc}") from exc
