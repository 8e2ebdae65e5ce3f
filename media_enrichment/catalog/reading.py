"""Reading one object's bytes, local or ``s3://``, with what a run may not read refused first.

``read_bytes`` checks the path against the run's ``Roots`` and refuses anything that is not a
regular file (``PathNotAllowedError``) before opening it, and files over a byte limit
(``ImageTooLargeError``) before reading (``os.stat``, S3's ContentLength) and while reading (at
most one byte past the limit is read). A local file is opened without following links and
checked again once open, so a file or folder swapped meanwhile is caught.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media_enrichment.catalog.s3 import access_error, is_s3, split_s3
from media_enrichment.errors import ImageError, ImageTooLargeError, PathNotAllowedError

if TYPE_CHECKING:
    from media_enrichment.catalog.roots import Roots

__all__ = ["read_bytes"]


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
    target, known = roots.resolve(uri) if roots is not None else (uri, None)

    def over(size: int) -> Exception:
        return too_large(f"{uri} is {size:,} bytes or more, over the limit of {max_bytes:,} bytes {_limit}; not read")

    if is_s3(target):
        if s3_client is None:
            raise error(f"an S3 client is needed to read {uri}")
        bucket, key = split_s3(target)
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
        before = known if known is not None else os.stat(target)  # the roots' lstat of a file that is no link
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
            roots.check_opened(uri, _opened_path(fd, target))  # a folder on the way swapped for a link
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
        if len(part) < want and total >= expected:
            break  # all the bytes measured, and no more came: the end (without one more read to learn it)
    return b"".join(parts)
