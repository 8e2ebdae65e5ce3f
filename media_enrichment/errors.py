"""A small error hierarchy. Provider SDK errors are translated into these at the edge.

How the pipeline treats each kind:

* ``CatalogError``: the catalogue itself is unusable; the run stops before any model call.
  ``CatalogAccessError``: the catalogue's storage refuses the credentials or has no such bucket;
  the run stops, never retried, never a failure row (a single missing object is an ``ImageError``).
* ``DatasetLocationError``: the dataset cannot be written there (a file, no permission, no
  bucket, access denied); the run stops before any model call, never retried.
* ``ImageError``: one image cannot be used (unreadable, undecodable, too large); it becomes a
  failure row and the run goes on. Two kinds are refused before a byte is read:
  ``PathNotAllowedError`` (the manifest names something outside the allowed roots, or not a
  regular file) and ``ImageTooLargeError`` (over ``max_image_bytes``).
* ``RetryableProviderError``: throttling, 5xx, timeouts; retried with backoff, then a failure row.
* ``InvalidResponseError``: the model answered something that could not be turned into metadata.
* ``RejectedRequestError``: the service refused this one request (validation); a failure row,
  no retry.
* ``FatalProviderError``: access denied, unknown model, bad credentials; the run stops early.
"""

from __future__ import annotations


class EnrichmentError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(EnrichmentError):
    """Settings that cannot work together."""


class CatalogError(EnrichmentError):
    """The catalogue (manifest, folder or prefix) is malformed or cannot be listed."""


class CatalogAccessError(CatalogError):
    """The catalogue's storage refused the request: access denied, bad or expired credentials, no such bucket."""


class ImageError(EnrichmentError):
    """One image cannot be read, decoded or brought within a model's limits."""


class PathNotAllowedError(ImageError):
    """A catalogue row names something that is not read: outside the allowed roots (``..``, an
    absolute path elsewhere, a symlink leaving them, another bucket or prefix), or not a regular
    file (a directory, a FIFO, a device). Refused before anything is opened or read."""


class ImageTooLargeError(ImageError):
    """An image file is larger than ``max_image_bytes``: refused before reading, or as soon as
    reading passes the limit (a file that grows)."""


class ProviderError(EnrichmentError):
    """A model provider failed for one request."""

    def __init__(self, message: str, *, code: str | None = None, raw: str | None = None):
        super().__init__(message)
        self.code = code
        self.raw = raw  # the model's raw answer, kept for inspection when parsing failed


class RetryableProviderError(ProviderError):
    """Transient: throttling, service unavailable, internal error, model timeout."""


class RejectedRequestError(ProviderError):
    """The service rejected this request (validation); retrying it would not help."""


class InvalidResponseError(ProviderError):
    """The model's answer could not be parsed into the metadata schema."""


class FatalProviderError(ProviderError):
    """The run cannot succeed for any image: access denied, unknown model, no credentials."""


class DatasetError(EnrichmentError):
    """The Delta dataset is missing, incompatible or could not be committed."""


class DatasetLocationError(DatasetError):
    """The dataset's location cannot be written: a file, no permission, no such bucket, access denied."""
