"""The records of a staging area's batch jobs: ``<staging>/batch/<key>.json``, each a ``BatchRun``.

A run writes the record of its work (``record_file``, keyed by the hash of its record ids) as
soon as it submits a job (``write_record``), before anything waits, so that a run that dies
leaves its jobs to the next run or to ``media-enrich collect``. ``recorded_jobs`` finds the
recorded jobs holding some of a run's records (they are followed, not submitted again),
``recorded_runs`` lists every record, and ``remove_records`` deletes them once their rows are
committed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator

from media_enrichment import storage
from media_enrichment.batch.submitted import BatchRun, SubmittedJob

# The package's logger: log lines keep the name they had before the package was split.
logger = logging.getLogger(__package__)

__all__ = [
    "RECORDS_FOLDER",
    "record_file",
    "recorded_jobs",
    "recorded_runs",
    "records_folder",
    "remove_records",
    "write_record",
]

#: Where a dataset's staging area keeps the record of its batch jobs.
RECORDS_FOLDER = "batch"
_RECORD_SUFFIX = ".json"


def records_folder(staging_dir: str) -> str:
    """The folder of a staging area holding its ``BatchRun`` records."""
    return storage.join(staging_dir, RECORDS_FOLDER)


def record_file(staging_dir: str, key: str) -> str:
    """The path of the record of the work keyed ``key``."""
    return storage.join(records_folder(staging_dir), f"{key}{_RECORD_SUFFIX}")


def write_record(path: str, run: BatchRun, *, storage_options: storage.Options = None) -> None:
    """Write (or rewrite) a record."""
    storage.write_bytes(path, run.to_json().encode(), options=storage_options)


def _read_records(
    staging_dir: str, *, storage_options: storage.Options, warn_missing: bool
) -> Iterator[tuple[str, BatchRun]]:
    """``(path, record)`` of the staging area's records, oldest name first; unreadable ones are
    skipped with a warning (one deleted since it was listed: with a warning if ``warn_missing``)."""
    for path in storage.list_files(records_folder(staging_dir), suffix=_RECORD_SUFFIX, options=storage_options):
        try:
            run = BatchRun.from_json(storage.read_bytes(path, options=storage_options))
        except FileNotFoundError as exc:
            if warn_missing:
                logger.warning("Ignoring %s, not a batch run record: %s", path, exc)
            continue
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignoring %s, not a batch run record: %s", path, exc)
            continue
        yield path, run


def recorded_runs(staging_dir: str, *, storage_options: storage.Options = None) -> list[BatchRun]:
    """The ``BatchRun`` records of a staging area (unreadable ones skipped), oldest name first."""
    return [run for _, run in _read_records(staging_dir, storage_options=storage_options, warn_missing=True)]


def recorded_jobs(
    staging_dir: str, record_ids: Collection[str], *, model_ids: Collection[str], storage_options: storage.Options = None
) -> tuple[dict[str, SubmittedJob], list[str]]:
    """The recorded jobs of these models holding some of these records (by ARN), and the paths of
    the records they are in."""
    jobs: dict[str, SubmittedJob] = {}
    files: list[str] = []
    for path, run in _read_records(staging_dir, storage_options=storage_options, warn_missing=False):
        used = False
        for job in run.jobs.values():
            if job.model_id not in model_ids:
                continue
            if any(rid in record_ids for rid, _, _ in job.records):
                jobs[job.job_arn] = job
                used = True
        if used:
            files.append(path)
            logger.info("Following the batch jobs recorded in %s instead of submitting them again", path)
    return jobs, files


def remove_records(paths: Iterable[str], *, storage_options: storage.Options = None) -> None:
    """Delete ``BatchRun`` records whose jobs' rows are committed."""
    for path in paths:
        storage.delete(path, options=storage_options)
