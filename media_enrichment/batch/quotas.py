"""Batch inference quotas: ``BatchQuotas``, and the defaults of the ``batch_*`` settings.

The settings live in ``media_enrichment.config.Settings`` (``MEDIA_ENRICH_BATCH_MIN_RECORDS`` ...);
the constants here are their defaults, read from there (one place for defaults). Bedrock's batch
quotas are per model and per region (Service Quotas, "Amazon Bedrock": "Minimum number of
records per batch inference job", "Records per input file per batch inference job", "Records
per batch inference job", "Batch inference input file size", "Batch inference job size"); the
defaults below are conservative values to check against the account's own quotas, not values
read from AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError

__all__ = [
    "DEFAULT_QUOTAS",
    "MAX_BYTES_PER_FILE",
    "MAX_BYTES_PER_JOB",
    "MAX_RECORDS_PER_FILE",
    "MAX_RECORDS_PER_JOB",
    "MIN_RECORDS",
    "POLL_SECONDS",
    "TIMEOUT_HOURS",
    "BatchQuotas",
    "check_timeout",
]

#: ``MEDIA_ENRICH_BATCH_MIN_RECORDS``: fewest records Bedrock accepts in one job (the quota
#: "Minimum number of records per batch inference job"; 100 for most models, up to 1,000 reported
#: for some). Work below it is not worth a job: run it on demand.
MIN_RECORDS = Settings.model_fields["batch_min_records"].default
#: ``MEDIA_ENRICH_BATCH_MAX_RECORDS_PER_FILE``: records in one ``.jsonl`` input file.
MAX_RECORDS_PER_FILE = Settings.model_fields["batch_max_records_per_file"].default
#: ``MEDIA_ENRICH_BATCH_MAX_RECORDS_PER_JOB``: records in one job, across its files.
MAX_RECORDS_PER_JOB = Settings.model_fields["batch_max_records_per_job"].default
#: ``MEDIA_ENRICH_BATCH_MAX_BYTES_PER_FILE``: size of one input file (a Claude record with a
#: 1.15-megapixel JPEG is about 0.3-1.5 MB of base64, so a file holds a few hundred of them).
MAX_BYTES_PER_FILE = Settings.model_fields["batch_max_bytes_per_file"].default
#: ``MEDIA_ENRICH_BATCH_MAX_BYTES_PER_JOB``: size of all of a job's input files.
MAX_BYTES_PER_JOB = Settings.model_fields["batch_max_bytes_per_job"].default
#: ``MEDIA_ENRICH_BATCH_TIMEOUT_HOURS``: ``timeoutDurationInHours`` of a job (24..168): a job
#: not finished by then ends ``PartiallyCompleted`` or, if it never started, ``Expired``.
TIMEOUT_HOURS = Settings.model_fields["batch_timeout_hours"].default
#: ``MEDIA_ENRICH_BATCH_POLL_SECONDS``: seconds between ``GetModelInvocationJob`` calls while
#: following a job (jobs take minutes to hours; the call has its own throttling quota).
POLL_SECONDS = Settings.model_fields["batch_poll_s"].default
#: Not settings: the service's bounds on ``timeoutDurationInHours`` (botocore's service model).
_TIMEOUT_BOUNDS = (24, 168)


@dataclass(frozen=True)
class BatchQuotas:
    """The per-model limits records are split under.

    Attributes:
        min_records: fewest records in a job (``MIN_RECORDS``).
        max_records_per_file: records in one input file (``MAX_RECORDS_PER_FILE``).
        max_bytes_per_file: bytes of one input file (``MAX_BYTES_PER_FILE``).
        max_records_per_job: records in one job (``MAX_RECORDS_PER_JOB``).
        max_bytes_per_job: bytes of one job's input files (``MAX_BYTES_PER_JOB``).
    """

    min_records: int = MIN_RECORDS
    max_records_per_file: int = MAX_RECORDS_PER_FILE
    max_bytes_per_file: int = MAX_BYTES_PER_FILE
    max_records_per_job: int = MAX_RECORDS_PER_JOB
    max_bytes_per_job: int = MAX_BYTES_PER_JOB

    def __post_init__(self) -> None:
        if self.min_records < 1:
            raise ConfigError("batch min_records must be at least 1")
        if min(self.max_records_per_file, self.max_bytes_per_file, self.max_records_per_job, self.max_bytes_per_job) < 1:
            raise ConfigError("batch quotas must be positive")
        if self.max_records_per_job < self.min_records:
            raise ConfigError("batch max_records_per_job is below min_records: no job could be formed")
        if self.max_bytes_per_file > self.max_bytes_per_job:
            raise ConfigError("batch max_bytes_per_file exceeds max_bytes_per_job")


DEFAULT_QUOTAS = BatchQuotas()


def check_timeout(hours: int) -> int:
    """``hours`` if Bedrock accepts it as ``timeoutDurationInHours``.

    Raises:
        ConfigError: outside 24..168.
    """
    low, high = _TIMEOUT_BOUNDS
    if isinstance(hours, bool) or not isinstance(hours, int) or not low <= hours <= high:
        raise ConfigError(f"batch timeout must be {low}..{high} hours, got {hours!r}")
    return hours
