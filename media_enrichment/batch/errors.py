"""The errors of batch inference (part of the library's hierarchy, ``media_enrichment.errors``)."""

from __future__ import annotations

from media_enrichment.errors import EnrichmentError

__all__ = ["BatchError", "BatchJobFailedError", "BatchTooSmallError", "RecordTooLargeError"]


class BatchError(EnrichmentError):
    """Batch inference cannot go on as asked."""


class BatchTooSmallError(BatchError):
    """Fewer records than the model's minimum per job: run them on demand instead.

    Raised before anything is written when the records are counted locally, and from
    ``submit_job`` when Bedrock refuses the job for it (``ValidationException``).
    """

    def __init__(self, message: str, *, count: int | None = None, minimum: int | None = None):
        super().__init__(message)
        self.count = count
        self.minimum = minimum


class RecordTooLargeError(BatchError):
    """One record is larger than an input file may be: it cannot go into any job."""


class BatchJobFailedError(BatchError):
    """A job ended ``Failed``, ``Stopped`` or ``Expired``: it has no results to read."""
