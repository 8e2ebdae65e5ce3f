"""Bedrock batch inference: records, jobs and results (the run driver's batch step is
``media_enrichment.pipeline.batch``).

* ``records``: a ``BatchRecord`` per image and model, built from the same InvokeModel body the
  on-demand describer and embedder send; stable record ids; ``split_jobs`` cuts records into
  jobs and files within ``BatchQuotas``, each ``JobSpec`` with a deterministic job name and
  client request token.
* ``jobs``: ``submit_job`` (input files to S3, ``CreateModelInvocationJob``), ``follow`` /
  ``wait`` (a ``JobState``), ``stop_job``.
* ``submitted``: what is kept of submitted jobs: ``BatchLocation`` (where a run's batch files
  go), ``SubmittedJob``, and ``BatchRun``, the JSON record of a run's jobs.
* ``results``: ``read_results`` joins a job's ``.jsonl.out`` files and manifest on record id:
  every record back once, ``ok``, ``invalid``, ``error`` or ``missing``.
* ``quotas``: ``BatchQuotas`` and the defaults of the ``batch_*`` settings; ``errors``: the
  batch errors (``BatchTooSmallError`` ...).
"""

from media_enrichment.batch.errors import (
    BatchError,
    BatchJobFailedError,
    BatchTooSmallError,
    RecordTooLargeError,
)
from media_enrichment.batch.jobs import (
    JobState,
    follow,
    stop_job,
    submit_job,
    wait,
)
from media_enrichment.batch.quotas import DEFAULT_QUOTAS, BatchQuotas
from media_enrichment.batch.records import (
    DESCRIBE,
    EMBED,
    BatchRecord,
    JobSpec,
    Split,
    describe_record,
    embed_record,
    split_jobs,
)
from media_enrichment.batch.results import (
    JobResults,
    Manifest,
    RecordResult,
    read_results,
)
from media_enrichment.batch.submitted import BatchLocation, BatchRun, SubmittedJob

__all__ = [
    "DEFAULT_QUOTAS",
    "DESCRIBE",
    "EMBED",
    "BatchError",
    "BatchJobFailedError",
    "BatchLocation",
    "BatchQuotas",
    "BatchRecord",
    "BatchRun",
    "BatchTooSmallError",
    "JobResults",
    "JobSpec",
    "JobState",
    "Manifest",
    "RecordResult",
    "RecordTooLargeError",
    "Split",
    "SubmittedJob",
    "describe_record",
    "embed_record",
    "follow",
    "read_results",
    "split_jobs",
    "stop_job",
    "submit_job",
    "wait",
]
