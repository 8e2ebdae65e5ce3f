"""What is kept of submitted batch jobs, JSON-friendly: where a run's batch files go
(``BatchLocation``), each job (``SubmittedJob``), and ``BatchRun``, the record of a run's jobs.

A ``BatchRun`` is kept in the dataset's staging area so that a later run (or ``media-enrich
collect``) can pick its jobs' results up; ``to_json`` / ``from_json`` write and read it (format 1).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from media_enrichment.errors import ConfigError

__all__ = ["BatchLocation", "BatchRun", "SubmittedJob"]

_FORMAT = 1


@dataclass(frozen=True)
class BatchLocation:
    """Where a run's batch files go: ``s3://<bucket>/<prefix>/``.

    Attributes:
        bucket: the bucket (in the job's region; the service role reads and writes it).
        prefix: the key prefix, without slashes at either end ("" for the bucket's root).
    """

    bucket: str
    prefix: str = ""

    @classmethod
    def from_uri(cls, uri: str) -> BatchLocation:
        """Parse ``s3://bucket/prefix``.

        Raises:
            ConfigError: not an ``s3://`` URI with a bucket.
        """
        if not isinstance(uri, str) or not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
            raise ConfigError(f"batch location must be an s3://bucket/prefix URI, not {uri!r}")
        bucket, _, prefix = uri[5:].partition("/")
        return cls(bucket, prefix.strip("/"))

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def input_key(self, job_name: str, name: str = "") -> str:
        """The key of a job's input folder (with ``name``: of one file in it)."""
        return self._key("input", job_name, name)

    def output_key(self, job_name: str) -> str:
        """The key of a job's output folder (Bedrock adds ``<job id>/``)."""
        return self._key("output", job_name)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}/"


@dataclass(frozen=True)
class SubmittedJob:
    """A job that was created, with what is needed to read its results later (JSON-friendly).

    Attributes:
        job_arn: the job's ARN; its last part is the job id.
        job_name, client_request_token: as sent.
        model_id: the job's model.
        kind: ``describe`` or ``embed``.
        input_uri, output_uri: the job's S3 folders.
        records: ``[record_id, image_id, content_sha256]`` of every record of the job.
        submitted_at: when it was submitted (ISO 8601, UTC).
    """

    job_arn: str
    job_name: str
    client_request_token: str
    model_id: str
    kind: str
    input_uri: str
    output_uri: str
    records: tuple[tuple[str, str, str], ...]
    submitted_at: str

    @property
    def job_id(self) -> str:
        """The last part of the ARN (Bedrock names the output folder after it)."""
        return self.job_arn.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["records"] = [list(r) for r in self.records]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubmittedJob:
        values = dict(data)
        values["records"] = tuple(tuple(r) for r in values["records"])
        return cls(**values)


@dataclass
class BatchRun:
    """The jobs one run submitted, as JSON (kept in the dataset's staging area).

    Attributes:
        run_id: the run that submitted them.
        jobs: the submitted jobs, by ARN (a job submitted twice is kept once).
        created_at: when the record was started (ISO 8601, UTC).
        source, batch: the catalogue and batch label of the run (so that ``media-enrich collect``
            can plan the same work again); None when not known.
    """

    run_id: str
    jobs: dict[str, SubmittedJob] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    source: str | None = None
    batch: str | None = None

    def add(self, job: SubmittedJob) -> None:
        """Record a job (again: the later record of the same ARN replaces the earlier)."""
        self.jobs[job.job_arn] = job

    def extend(self, jobs: Iterable[SubmittedJob]) -> None:
        for job in jobs:
            self.add(job)

    def to_json(self) -> str:
        """The record as a JSON document (``format``, ``run_id``, ``created_at``, ``jobs``)."""
        return json.dumps(
            {"format": _FORMAT, "run_id": self.run_id, "created_at": self.created_at, "source": self.source,
             "batch": self.batch, "jobs": [job.to_dict() for job in self.jobs.values()]},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> BatchRun:
        """Read a record written by ``to_json``.

        Raises:
            ValueError: not such a record, or of a later format.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or "jobs" not in data:
            raise ValueError("not a batch run record of format 1")
        run = cls(
            run_id=str(data["run_id"]), created_at=str(data.get("created_at", "")),
            source=data.get("source") if isinstance(data.get("source"), str) else None,
            batch=data.get("batch") if isinstance(data.get("batch"), str) else None,
        )
        run.extend(SubmittedJob.from_dict(job) for job in data["jobs"])
        return run
