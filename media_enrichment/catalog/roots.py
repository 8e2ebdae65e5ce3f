"""Confinement: where a run may read images (``Roots``), and the roots of a catalogue (``roots_for``).

A manifest is untrusted input: what its rows name is read only inside the run's roots (the
manifest's folder or prefix, a scanned folder or prefix, and the ``allowed_roots`` setting).
``Roots.check`` resolves a local path's links (each folder's real path once per process,
``_real_folder``) and refuses a path outside every root, or an S3 URI of another bucket or
prefix, with ``PathNotAllowedError``.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from media_enrichment.catalog.manifest import MANIFEST_SUFFIXES
from media_enrichment.catalog.s3 import is_s3
from media_enrichment.errors import PathNotAllowedError

__all__ = ["Roots", "roots_for"]

_WIDEN = "use --allow-root or MEDIA_ENRICH_ALLOWED_ROOTS to widen them"


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
        return self.resolve(uri)[0]

    def resolve(self, uri: str) -> tuple[str, os.stat_result | None]:
        """``check``, and the file's ``lstat`` when it was taken on the way and the file is no
        link (then it is the file's ``stat``: the reader need not ask again).

        Raises:
            PathNotAllowedError: as ``check``.
        """
        if "\x00" in uri:
            raise PathNotAllowedError(f"{uri!r} has a NUL character: not a path")
        if is_s3(uri):
            bucket, _, key = uri[len("s3://") :].partition("/")
            if ".." in key.split("/"):
                raise PathNotAllowedError(f"{uri} has a '..' segment: S3 keys are not paths, so it is never read")
            if not any(bucket == b and key.startswith(prefix) for b, prefix in self.s3):
                raise PathNotAllowedError(f"{uri} is outside the allowed roots ({self.described}); {_WIDEN}")
            return uri, None
        real, status = _realpath(uri)
        if not any(_within(real, root) for root in self.local):
            via = f" (a link to {real})" if real != os.path.abspath(uri) else ""
            raise PathNotAllowedError(f"{uri}{via} is outside the allowed roots ({self.described}); {_WIDEN}")
        return real, status

    def check_opened(self, uri: str, opened: str) -> None:
        """Refuse a file whose opened real path (``/proc/self/fd``: no link left in it) is
        outside every local root: a folder on the way was swapped for a link after ``check``.

        Raises:
            PathNotAllowedError: outside every local root.
        """
        if not any(_within(opened, root) for root in self.local):
            raise PathNotAllowedError(f"{uri} (opened as {opened}) is outside the allowed roots ({self.described}); {_WIDEN}")


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _realpath(uri: str) -> tuple[str, os.stat_result | None]:
    """``os.path.realpath(uri)``, with the real path of each folder resolved once per process
    (a catalogue's images share few folders), and the file's ``lstat`` when it is no link. A
    folder swapped for a link after that is still caught: the reader checks the real path of
    the file it opened before reading it (``Roots.check_opened``)."""
    folder, name = os.path.split(os.path.abspath(uri))
    if name in ("", ".", ".."):
        return os.path.realpath(uri), None
    candidate = os.path.join(_real_folder(folder), name)
    try:
        status = os.lstat(candidate)
    except (OSError, ValueError):
        return candidate, None  # missing or unreadable: the reader's own stat says why
    if stat.S_ISLNK(status.st_mode):
        return os.path.realpath(candidate), None
    return candidate, status


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
        if is_s3(text):
            bucket, root = _s3_root(text.rsplit("/", 1)[0] + "/" if is_manifest else text)
            s3.append((bucket, root))
            own.append(f"the {'manifest' if is_manifest else 'catalogue'}'s prefix s3://{bucket}/{root}")
        else:
            path = Path(text).resolve()
            folder = str(path.parent if is_manifest else path)
            local.append(folder)
            own.append(f"the manifest's folder {folder}" if is_manifest else f"the folder {folder}")
    for root in allowed:
        if is_s3(root):
            s3.append(_s3_root(root))
        else:
            local.append(os.path.realpath(os.path.expanduser(root)))
    if allowed:
        own.append("the allowed roots " + ", ".join(allowed))
    return Roots(
        local=tuple(dict.fromkeys(local)), s3=tuple(dict.fromkeys(s3)), described="; ".join(own) or "none"
    )
