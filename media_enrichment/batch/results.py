"""Reading a batch job's results: every record of the job back, exactly once.

Bedrock writes ``<output URI>/<job id>/<input file>.jsonl.out`` per input file, a line per
processed record (``recordId``, ``modelInput`` and ``modelOutput`` or ``error`` with
``errorCode`` and ``errorMessage``), in no particular order, and ``manifest.json.out`` with the
record and token counts. ``read_results`` joins the lines on ``recordId`` with the job's own
list of records: a ``modelOutput`` is parsed as on demand (``parse_claude_answer`` for Claude,
the embedder's ``parse_answer`` for Titan), an ``error`` is kept as the record's error, and a
record absent from the output (the job was stopped, partially completed or failed) is
``missing``. Bedrock does not retry failed records: the caller decides what to run again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media_enrichment.batch.submitted import SubmittedJob
from media_enrichment.batch.records import DESCRIBE
from media_enrichment.errors import InvalidResponseError
from media_enrichment.providers.bedrock.answers import ParsedAnswer, parse_claude_answer
from media_enrichment.providers.bedrock.embedders import embedding_vector
from media_enrichment.schema import ImageMetadata

logger = logging.getLogger(__name__)

__all__ = ["ERROR", "INVALID", "MISSING", "OK", "JobResults", "Manifest", "RecordResult", "read_results"]

OK = "ok"  # a usable answer
INVALID = "invalid"  # an answer that is not usable metadata or a vector (``error_code`` says why)
ERROR = "error"  # Bedrock's error for the record (``error_code``, ``error_message``)
MISSING = "missing"  # not in the output at all


@dataclass(frozen=True)
class Manifest:
    """``manifest.json.out``: the job's record and token counts."""

    total: int
    processed: int
    success: int
    errors: int
    input_tokens: int
    output_tokens: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        def count(name: str) -> int:
            try:
                return max(0, int(data.get(name) or 0))
            except (TypeError, ValueError):
                return 0

        return cls(
            total=count("totalRecordCount"),
            processed=count("processedRecordCount"),
            success=count("successRecordCount"),
            errors=count("errorRecordCount"),
            input_tokens=count("inputTokenCount"),
            output_tokens=count("outputTokenCount"),
        )


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome.

    Attributes:
        record_id, image_id, content_sha256, kind: the record.
        status: ``ok``, ``invalid``, ``error`` or ``missing``.
        metadata: the description (``describe``, ``ok``).
        vector: the embedding (``embed``, ``ok``).
        parsed: Claude's parsed answer (``describe``, ``ok`` or ``invalid``; ``raw`` kept).
        error_code, error_message: why it is not ``ok``.
        input_tokens, output_tokens: the answer's usage (0 without one).
    """

    record_id: str
    image_id: str
    content_sha256: str
    kind: str
    status: str
    metadata: ImageMetadata | None = None
    vector: np.ndarray | None = None
    parsed: ParsedAnswer | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class JobResults:
    """Every record of a job, once, by record id.

    Attributes:
        job: the job.
        records: record id -> its result, for every record of the job (in the job's order).
        manifest: the manifest, if Bedrock wrote one.
        unexpected: record ids found in the output that are not the job's (ignored).
        duplicates: record ids found more than once (the first line is kept).
        unreadable: output lines that were not JSON objects with a ``recordId``.
    """

    job: SubmittedJob
    records: dict[str, RecordResult]
    manifest: Manifest | None = None
    unexpected: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unreadable: int = 0

    def counts(self) -> dict[str, int]:
        """Records per status."""
        out = {OK: 0, INVALID: 0, ERROR: 0, MISSING: 0}
        for result in self.records.values():
            out[result.status] += 1
        return out

    def with_status(self, status: str) -> list[RecordResult]:
        return [r for r in self.records.values() if r.status == status]


def read_results(s3: Any, job: SubmittedJob, *, embedder: Any = None, dim: int | None = None) -> JobResults:
    """Read and join a job's output.

    Args:
        s3: an S3 client for the job's output location.
        job: the submitted job.
        embedder: for ``embed`` jobs, the ``BedrockEmbedder`` whose ``parse_answer`` reads a
            vector (the same parsing as on demand).
        dim: for ``embed`` jobs without an embedder, the vector length expected.

    Returns:
        The results: every record of the job exactly once.

    Raises:
        ValueError: an ``embed`` job without ``embedder`` or ``dim``.
    """
    if job.kind != DESCRIBE and embedder is None and dim is None:
        raise ValueError("reading an embed job's results needs the embedder (or the vector dim)")
    bucket, _, prefix = job.output_uri[len("s3://") :].partition("/")
    folder = "/".join(p for p in (prefix.strip("/"), job.job_id) if p) + "/"
    keys: list[str] = []
    manifest: Manifest | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for obj in page.get("Contents", []):
            keys.append(obj["Key"])
    ours = {rid: (image_id, sha) for rid, image_id, sha in job.records}
    found: dict[str, RecordResult] = {}
    results = JobResults(job=job, records={})
    for key in sorted(keys):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith("/manifest.json.out"):
            try:
                manifest = Manifest.from_json(json.loads(body))
            except (ValueError, AttributeError):
                logger.warning("batch job %s: unreadable manifest %s", job.job_id, key)
            continue
        if not key.endswith(".jsonl.out"):
            continue
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("recordId"), str):
                results.unreadable += 1
                continue
            rid = record["recordId"]
            if rid not in ours:
                results.unexpected.append(rid)
                continue
            if rid in found:
                results.duplicates.append(rid)
                continue
            image_id, sha = ours[rid]
            found[rid] = _result(job, rid, image_id, sha, record, embedder=embedder, dim=dim)
    for rid, image_id, sha in job.records:
        results.records[rid] = found.get(rid) or RecordResult(
            rid, image_id, sha, job.kind, MISSING, error_code="Missing",
            error_message=f"record {rid} is not in the output of batch job {job.job_id}",
        )
    results.manifest = manifest
    if results.unexpected or results.duplicates or results.unreadable:
        logger.warning(
            "batch job %s: %d unexpected, %d duplicate and %d unreadable output lines",
            job.job_id, len(results.unexpected), len(results.duplicates), results.unreadable,
        )
    return results


def _result(
    job: SubmittedJob, rid: str, image_id: str, sha: str, record: dict[str, Any], *, embedder: Any, dim: int | None
) -> RecordResult:
    base = {"record_id": rid, "image_id": image_id, "content_sha256": sha, "kind": job.kind}
    error = record.get("error")
    output = record.get("modelOutput")
    if error is not None or not isinstance(output, dict):
        error = error if isinstance(error, dict) else {}
        return RecordResult(
            **base, status=ERROR, error_code=str(error.get("errorCode", "NoOutput")),
            error_message=str(error.get("errorMessage") or "the record has neither modelOutput nor error"),
        )
    if job.kind == DESCRIBE:
        usage = output.get("usage") if isinstance(output.get("usage"), dict) else {}
        tokens = {"input_tokens": _as_int(usage.get("input_tokens")), "output_tokens": _as_int(usage.get("output_tokens"))}
        parsed = parse_claude_answer(output)
        if parsed.metadata is None:
            return RecordResult(**base, status=INVALID, parsed=parsed, error_code=parsed.kind, error_message=parsed.problem, **tokens)
        return RecordResult(**base, status=OK, metadata=parsed.metadata, parsed=parsed, **tokens)
    tokens = {"input_tokens": _as_int(output.get("inputTextTokenCount")), "output_tokens": 0}
    try:
        if embedder is not None:
            vector = embedder.parse_answer(output)
        else:
            vector = embedding_vector(output.get("embedding"), output, model_id=job.model_id, dim=int(dim or 0))
    except InvalidResponseError as exc:
        return RecordResult(**base, status=INVALID, error_code=exc.code, error_message=str(exc), **tokens)
    return RecordResult(**base, status=OK, vector=vector, **tokens)


def _as_int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
