"""Batch records, and how they are split into input files and jobs.

A record is one line of a batch input file, ``{"recordId": ..., "modelInput": ...}``, where
``modelInput`` is exactly the InvokeModel body the on-demand path sends for the same prepared
image: ``BedrockDescriber.request_body([describer.image_message(image)])`` (its first turn) and
``BedrockEmbedder.image_body(image)``. So a batch answer is parsed the same way as an on-demand
one, and the two paths cannot drift apart.

``recordId`` is 11 characters of ``[A-Za-z0-9]`` (the strictest form Bedrock's documentation
gives: "11 character alphanumeric string"), a digest of the image id, its content hash, the
kind of call, the model id and the model's version string (prompt version and output budget for
Claude, vector size for Titan): the same record in a later run has the same id, and a record
whose result would differ has another.

``split_jobs`` groups records by model, orders them by record id, and cuts them into jobs and
each job into files within ``BatchQuotas``. ``JobSpec.job_name`` and
``JobSpec.client_request_token`` are digests of the job's model and input lines, so submitting
the same records again is the same job (Bedrock returns the first job for a repeated token).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from media_enrichment.batch.errors import RecordTooLargeError
from media_enrichment.batch.quotas import DEFAULT_QUOTAS, BatchQuotas
from media_enrichment.errors import ConfigError
from media_enrichment.images import PreparedImage

__all__ = [
    "DESCRIBE",
    "EMBED",
    "RECORD_ID_LENGTH",
    "BatchRecord",
    "JobSpec",
    "Split",
    "describe_record",
    "describe_version",
    "embed_record",
    "embed_version",
    "make_record",
    "record_id",
    "split_jobs",
]

DESCRIBE = "describe"
EMBED = "embed"
RECORD_ID_LENGTH = 11
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# botocore's bedrock service model: jobName is 1..63 of this pattern.
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_MAX_JOB_NAME = 63
DEFAULT_NAME_PREFIX = "media-enrich"


def record_id(image_id: str, content_sha256: str, *, kind: str, model_id: str, version: str) -> str:
    """The stable ``recordId`` of one call for one image.

    Args:
        image_id: the catalogue's id of the image.
        content_sha256: hex SHA-256 of the image's bytes.
        kind: ``describe`` or ``embed``.
        model_id: the model (or profile) id the job uses.
        version: what else changes the answer (prompt version and budget, vector size).

    Returns:
        11 characters of ``[0-9A-Za-z]`` (about 65 bits of the digest).
    """
    material = json.dumps([image_id, content_sha256, kind, model_id, version], separators=(",", ":"))
    value = int.from_bytes(hashlib.sha256(material.encode("utf-8")).digest()[:9], "big")
    chars = []
    for _ in range(RECORD_ID_LENGTH):
        value, rest = divmod(value, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return "".join(chars)


@dataclass(frozen=True)
class BatchRecord:
    """One line of a batch input file, and what it is for.

    Attributes:
        record_id: the line's ``recordId``.
        image_id, content_sha256: the image it is about.
        kind: ``describe`` or ``embed``.
        model_id: the model the line's job must use.
        line: the JSONL line, UTF-8, ending in a newline.
    """

    record_id: str
    image_id: str
    content_sha256: str
    kind: str
    model_id: str
    line: bytes

    @property
    def size(self) -> int:
        """Bytes of the line in its file."""
        return len(self.line)

    @property
    def model_input(self) -> dict[str, Any]:
        """The line's ``modelInput`` (the InvokeModel body), decoded."""
        return json.loads(self.line)["modelInput"]


def make_record(image_id: str, content_sha256: str, *, kind: str, model_id: str, version: str, body: dict[str, Any]) -> BatchRecord:
    """A record for an InvokeModel ``body``.

    Args:
        image_id, content_sha256: the image.
        kind: ``describe`` or ``embed``.
        model_id: the model id (or inference profile id / ARN) of the job.
        version: see ``record_id``.
        body: the InvokeModel body, sent as ``modelInput`` unchanged.

    Returns:
        The record; its line is compact JSON.
    """
    if kind not in (DESCRIBE, EMBED):
        raise ValueError(f"kind must be {DESCRIBE!r} or {EMBED!r}, not {kind!r}")
    rid = record_id(image_id, content_sha256, kind=kind, model_id=model_id, version=version)
    line = json.dumps({"recordId": rid, "modelInput": body}, separators=(",", ":")).encode("utf-8") + b"\n"
    return BatchRecord(rid, image_id, content_sha256, kind, model_id, line)


def describe_record(describer: Any, image_id: str, content_sha256: str, image: PreparedImage) -> BatchRecord:
    """The describe record of one image: the body ``BedrockDescriber.describe`` sends first.

    Args:
        describer: a ``BedrockDescriber`` (its model, prompt, ``max_tokens``, temperature).
        image_id, content_sha256: the image.
        image: the image prepared within ``CLAUDE_LIMITS``.

    Returns:
        A ``describe`` record for ``describer.model_id``.
    """
    body = describer.request_body([describer.image_message(image)])
    return make_record(
        image_id, content_sha256, kind=DESCRIBE, model_id=describer.model_id, version=describe_version(describer), body=body
    )


def describe_version(describer: Any) -> str:
    """What besides the image changes a describe record's answer: prompt version, budget, temperature."""
    return json.dumps(
        {"prompt": describer.prompt_version, "max_tokens": describer.max_tokens, "temperature": describer.temperature},
        sort_keys=True,
    )


def embed_version(embedder: Any) -> str:
    """What besides the image changes an embed record's answer: the vector size."""
    return f"dim={embedder.dim}"


def embed_record(embedder: Any, image_id: str, content_sha256: str, image: PreparedImage) -> BatchRecord:
    """The embed record of one image: the body ``BedrockEmbedder.embed_image`` sends.

    Args:
        embedder: a ``BedrockEmbedder`` (Titan Multimodal Embeddings G1; its model and ``dim``).
        image_id, content_sha256: the image.
        image: the image prepared within ``TITAN_LIMITS``.

    Returns:
        An ``embed`` record for ``embedder.model_id``.
    """
    body = embedder.image_body(image)
    return make_record(
        image_id, content_sha256, kind=EMBED, model_id=embedder.model_id, version=embed_version(embedder), body=body
    )


@dataclass(frozen=True)
class JobSpec:
    """One job to submit: a model, and its records in input files.

    Attributes:
        model_id: the job's ``modelId``.
        kind: ``describe`` or ``embed``.
        files: the records of each input file, in order.
        name_prefix: the start of ``job_name``.
        attempt: 0 for the first submission of these records; n for the n-th submission after
            a job of theirs ended without results (Failed, Expired): another name and token,
            since a repeated token would answer the ended job again.
    """

    model_id: str
    kind: str
    files: tuple[tuple[BatchRecord, ...], ...]
    name_prefix: str = DEFAULT_NAME_PREFIX
    attempt: int = 0

    @property
    def records(self) -> list[BatchRecord]:
        """Every record, file after file."""
        return [record for file in self.files for record in file]

    @property
    def record_count(self) -> int:
        return sum(len(file) for file in self.files)

    @property
    def size(self) -> int:
        """Bytes of all input files."""
        return sum(record.size for file in self.files for record in file)

    @cached_property
    def digest(self) -> str:
        """Hex SHA-256 of the model, the kind and every file's lines (file boundaries included),
        and of the attempt after the first."""
        h = hashlib.sha256(json.dumps([self.model_id, self.kind]).encode("utf-8"))
        for number, file in enumerate(self.files):
            h.update(f"\0file {number}\0".encode())
            for record in file:
                h.update(record.line)
        if self.attempt:
            h.update(f"\0attempt {self.attempt}".encode())
        return h.hexdigest()

    @property
    def job_name(self) -> str:
        """``<prefix>-<kind>-<24 hex of the digest>``: at most 63 characters, Bedrock's pattern."""
        return f"{self.name_prefix}-{self.kind}-{self.digest[:24]}"

    @property
    def client_request_token(self) -> str:
        """The digest (64 hex characters): the same records are the same CreateModelInvocationJob."""
        return self.digest

    def file_bytes(self, number: int) -> bytes:
        """The content of input file ``number``."""
        return b"".join(record.line for record in self.files[number])


@dataclass(frozen=True)
class Split:
    """Records cut into jobs.

    Attributes:
        jobs: the jobs, per model in record-id order.
        below_minimum: records of a model too few for a job (``min_records``): run them on demand.
    """

    jobs: tuple[JobSpec, ...]
    below_minimum: tuple[BatchRecord, ...]


def split_jobs(
    records: Iterable[BatchRecord], *, quotas: BatchQuotas = DEFAULT_QUOTAS, name_prefix: str = DEFAULT_NAME_PREFIX
) -> Split:
    """Cut records into jobs and input files within the quotas.

    Records are grouped by (model, kind) and ordered by record id, so the same records give the
    same jobs whatever order they come in. A model's records are spread evenly over as few jobs
    as the per-job quotas allow; a job too small for ``min_records`` (possible only when record
    sizes are uneven) takes records from the job before it, or, for a model with fewer than
    ``min_records`` records in all, its records are returned in ``below_minimum``.

    Args:
        records: the records (a record id given twice with the same line counts once).
        quotas: records and bytes per file and per job, and the minimum per job.
        name_prefix: the start of each job name (letters, digits, dashes; at most 30 characters).

    Returns:
        The jobs and the records left for on-demand calls.

    Raises:
        RecordTooLargeError: a record is larger than ``max_bytes_per_file``.
        ValueError: one record id with two different lines (a digest collision or a bug).
        ConfigError: an unusable name prefix.
    """
    if len(name_prefix) > 30 or not _JOB_NAME.fullmatch(name_prefix + "-x"):
        raise ConfigError(f"batch job name prefix {name_prefix!r} must be 1..30 letters, digits or dashes")
    groups: dict[tuple[str, str], dict[str, BatchRecord]] = defaultdict(dict)
    for record in records:
        group = groups[(record.model_id, record.kind)]
        seen = group.get(record.record_id)
        if seen is not None and seen.line != record.line:
            raise ValueError(f"record id {record.record_id} names two different records ({seen.image_id}, {record.image_id})")
        if record.size > quotas.max_bytes_per_file:
            raise RecordTooLargeError(
                f"the {record.kind} record of image {record.image_id!r} is {record.size} bytes, more than an input "
                f"file may hold ({quotas.max_bytes_per_file})"
            )
        group[record.record_id] = record
    jobs: list[JobSpec] = []
    left: list[BatchRecord] = []
    for (model_id, kind), by_id in sorted(groups.items()):
        ordered = [by_id[key] for key in sorted(by_id)]
        if len(ordered) < quotas.min_records:
            left.extend(ordered)
            continue
        chunks = _job_chunks(ordered, quotas)
        if len(chunks[-1]) < quotas.min_records:  # could not be balanced: leave it on demand
            left.extend(chunks.pop())
        for chunk in chunks:
            jobs.append(JobSpec(model_id, kind, _files(chunk, quotas), name_prefix))
    return Split(tuple(jobs), tuple(left))


def _job_chunks(ordered: list[BatchRecord], quotas: BatchQuotas) -> list[list[BatchRecord]]:
    """Consecutive runs of records, one per job, as even as the quotas allow."""
    total_bytes = sum(record.size for record in ordered)
    jobs = max(math.ceil(len(ordered) / quotas.max_records_per_job), math.ceil(total_bytes / quotas.max_bytes_per_job), 1)
    target = math.ceil(len(ordered) / jobs)
    chunks: list[list[BatchRecord]] = [[]]
    size = 0
    for record in ordered:
        current = chunks[-1]
        if current and (len(current) >= target or size + record.size > quotas.max_bytes_per_job):
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += record.size
    # Top up a short last job from the one before it, if both stay within the quotas.
    while len(chunks) > 1 and len(chunks[-1]) < quotas.min_records:
        previous, last = chunks[-2], chunks[-1]
        need = quotas.min_records - len(last)
        moved = previous[-need:]
        if len(previous) - need < quotas.min_records or sum(r.size for r in last + moved) > quotas.max_bytes_per_job:
            break
        chunks[-2], chunks[-1] = previous[:-need], moved + last
    return chunks


def _files(records: list[BatchRecord], quotas: BatchQuotas) -> tuple[tuple[BatchRecord, ...], ...]:
    files: list[list[BatchRecord]] = [[]]
    size = 0
    for record in records:
        current = files[-1]
        if current and (len(current) >= quotas.max_records_per_file or size + record.size > quotas.max_bytes_per_file):
            files.append([])
            size = 0
        files[-1].append(record)
        size += record.size
    return tuple(tuple(file) for file in files)
