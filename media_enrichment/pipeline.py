"""What happens to images between the catalogue and the dataset, without orchestration.

The flow calls these in order: ``plan_work`` (hash, skip what is stored), ``split_chunks``,
``ChunkEnricher.enrich`` per chunk (read, prepare, describe, embed; per-image errors become
failure rows), ``stage_chunk``, then ``Dataset.merge_assets_from_parquet`` over the staged files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from media_enrichment import storage
from media_enrichment.catalog import Catalog
from media_enrichment.errors import (
    CatalogAccessError,
    EnrichmentError,
    FatalProviderError,
    ImageError,
    RejectedRequestError,
    RetryableProviderError,
)
from media_enrichment.images import prepare_images
from media_enrichment.providers.base import Describer, Description, Embedder
from media_enrichment.schema import ASSETS_SCHEMA, FAILURES_SCHEMA

if TYPE_CHECKING:
    from media_enrichment.dataset import Dataset

Reader = Callable[[str], bytes]


@dataclass(frozen=True)
class ModelVersions:
    """What must be unchanged for a stored row to be reused."""

    enrichment_model: str
    embedding_model: str
    prompt_version: str
    embedding_dim: int

    @classmethod
    def of(cls, describer: Describer, embedder: Embedder) -> ModelVersions:
        return cls(describer.model_id, embedder.model_id, describer.prompt_version, embedder.dim)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "enrichment_model": self.enrichment_model,
            "embedding_model": self.embedding_model,
            "prompt_version": self.prompt_version,
            "embedding_dim": self.embedding_dim,
        }


@dataclass(frozen=True)
class WorkItem:
    """One image to enrich. Small and picklable: a reference, never pixels."""

    image_id: str
    source_uri: str
    content_sha256: str
    attributes: str | None = None  # JSON of the manifest's extra columns
    batch: str | None = None  # the manifest's own batch column, when it has one


@dataclass
class Plan:
    """The outcome of planning: what to enrich, what is reused, what failed to read, and which
    failed images are not tried again (same bytes, and a permanent error or attempts spent)."""

    items: list[WorkItem]
    reused: int
    total: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_permanent(error: BaseException, stage: str) -> bool:
    """Whether trying the same bytes again cannot help: the file does not decode, or the
    service rejected the request. A missing file may appear, so a read error is not permanent."""
    return stage != "read" and isinstance(error, (ImageError, RejectedRequestError))


def failure_row(
    *,
    image_id: str,
    source_uri: str,
    stage: str,
    error: BaseException,
    run_id: str,
    attempts: int = 1,
    content_sha256: str | None = None,
) -> dict[str, Any]:
    """A row of the failures table for one image that could not be processed."""
    code = getattr(error, "code", None)
    message = str(error) or type(error).__name__
    raw = getattr(error, "raw", None)
    if raw:
        message = f"{message} | raw answer: {raw[:2000]}"
    return {
        "image_id": image_id,
        "source_uri": source_uri,
        "content_sha256": content_sha256,
        "stage": stage,
        "error_type": code or type(error).__name__,
        "message": message[:4000],
        "attempts": attempts,
        "permanent": is_permanent(error, stage),
        "run_id": run_id,
        "at": datetime.now(timezone.utc),
    }


def _attributes(catalog: Catalog) -> list[str | None]:
    extras = catalog.extra_columns
    if not extras:
        return [None] * len(catalog.frame)
    records = catalog.frame[extras].astype(object).where(catalog.frame[extras].notna(), None).to_dict("records")
    return [json.dumps(r, default=str, sort_keys=True) for r in records]


def plan_work(
    catalog: Catalog,
    *,
    stored: pd.DataFrame,
    versions: ModelVersions,
    read: Reader,
    run_id: str,
    failures: pd.DataFrame | None = None,
    max_attempts: int = 3,
    force: bool = False,
    workers: int = 8,
    default_batch: str | None = None,
) -> Plan:
    """Hash every catalogue image and keep those whose stored row cannot be reused.

    Args:
        catalog: the loaded catalogue.
        stored: the dataset's fingerprints (``Dataset.fingerprints()``).
        versions: the models and prompt of this run.
        read: reads one ``source_uri``; raises ``ImageError`` when it cannot.
        run_id: stored on failure rows.
        failures: the dataset's failures table; an image that failed with the same bytes is
            not tried again if its error was permanent or it has had ``max_attempts`` tries.
        max_attempts: tries before a failing image is left alone (until its bytes change).
        force: enrich everything again, failed images included.
        workers: threads hashing images (I/O bound).
        default_batch: the batch label of items the manifest gives none (its ``batch`` column).

    Returns:
        The plan; unreadable images are in ``failures``.

    Raises:
        CatalogAccessError: the catalogue's storage refused a read (access denied, bad
            credentials, no such bucket): no image could be read, so none becomes a failure
            row, and the reads not yet started are cancelled.
    """
    frame = catalog.frame
    attributes = _attributes(catalog)

    def digest(uri: str) -> str | BaseException:
        try:
            return sha256_hex(read(uri))
        except ImageError as exc:  # this image only; a CatalogAccessError stops the plan
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(digest, frame["source_uri"]))

    reusable: set[tuple[str, str]] = set()
    if not force and not stored.empty:
        same = (
            (stored["enrichment_model"] == versions.enrichment_model)
            & (stored["embedding_model"] == versions.embedding_model)
            & (stored["prompt_version"] == versions.prompt_version)
            & (stored["embedding_dim"] == versions.embedding_dim)
        )
        reusable = set(zip(stored.loc[same, "image_id"], stored.loc[same, "content_sha256"]))

    exhausted: set[tuple[str, str]] = set()
    if not force and failures is not None and not failures.empty:
        spent = failures["permanent"].fillna(False).astype(bool) | (failures["attempts"] >= max_attempts)
        known = failures[spent & failures["content_sha256"].notna()]
        exhausted = set(zip(known["image_id"], known["content_sha256"]))

    plan = Plan(items=[], reused=0, total=len(frame))
    batches = frame["batch"].astype(str) if "batch" in frame.columns else [None] * len(frame)
    for image_id, uri, result, attrs, batch in zip(frame["image_id"], frame["source_uri"], digests, attributes, batches):
        if isinstance(result, BaseException):
            plan.failures.append(failure_row(image_id=image_id, source_uri=uri, stage="read", error=result, run_id=run_id))
        elif (image_id, result) in reusable:
            plan.reused += 1
        elif (image_id, result) in exhausted:
            plan.given_up.append(image_id)
        else:
            plan.items.append(
                WorkItem(
                    image_id=image_id, source_uri=uri, content_sha256=result, attributes=attrs,
                    batch=batch or default_batch,
                )
            )
    return plan


def split_chunks(items: Sequence[WorkItem], size: int) -> list[list[WorkItem]]:
    """Split work into chunks of at most ``size`` items, in a stable order."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    count = math.ceil(len(items) / size)
    return [list(items[i * size : (i + 1) * size]) for i in range(count)]


def chunk_key(items: Sequence[WorkItem], versions: ModelVersions) -> str:
    """A name for a chunk's staged results: changes with its images' content and the models."""
    h = hashlib.sha256(json.dumps(versions.as_metadata(), sort_keys=True).encode())
    for item in items:
        h.update(f"\n{item.image_id}\t{item.content_sha256}".encode())
    return h.hexdigest()[:24]


@dataclass
class ChunkResult:
    """Rows and failures of one chunk."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return sum(r["input_tokens"] for r in self.rows)

    @property
    def output_tokens(self) -> int:
        return sum(r["output_tokens"] for r in self.rows)


class _StageFailure(Exception):
    """One image failed at one stage; carries what was already paid for (the description)."""

    def __init__(self, stage: str, error: EnrichmentError, description: Description | None):
        super().__init__(str(error))
        self.stage, self.error, self.description = stage, error, description


@dataclass
class ChunkEnricher:
    """Enriches chunks of images with one describer and one embedder.

    Transient provider errors (throttling, 5xx, timeouts that outlasted the client's own retries)
    get ``transient_retries`` more passes at the end of the chunk, after a backoff with jitter;
    a description already obtained is kept, so only the failed call is repeated.
    """

    describer: Describer
    embedder: Embedder
    read: Reader
    run_id: str
    batch: str | None = None
    transient_retries: int = 2
    retry_delay_s: float = 1.0

    @property
    def versions(self) -> ModelVersions:
        return ModelVersions.of(self.describer, self.embedder)

    def enrich(self, items: Sequence[WorkItem]) -> ChunkResult:
        """Enrich every item; a per-image error becomes a failure row.

        Raises:
            FatalProviderError: no image can succeed (access denied, unknown model).
            CatalogAccessError: the catalogue's storage refused the credentials or has no such bucket.
        """
        result = ChunkResult()
        pending: list[tuple[WorkItem, Description | None]] = [(item, None) for item in items]
        for attempt in range(self.transient_retries + 1):
            if attempt:
                time.sleep(self.retry_delay_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            retry: list[tuple[WorkItem, Description | None]] = []
            for item, description in pending:
                try:
                    result.rows.append(self.enrich_one(item, description=description))
                except _StageFailure as failure:
                    if isinstance(failure.error, RetryableProviderError) and attempt < self.transient_retries:
                        retry.append((item, failure.description))
                    else:
                        result.failures.append(
                            failure_row(
                                image_id=item.image_id, source_uri=item.source_uri, stage=failure.stage,
                                error=failure.error, run_id=self.run_id, attempts=attempt + 1,
                                content_sha256=item.content_sha256,
                            )
                        )
            if not retry:
                break
            pending = retry
        return result

    def enrich_one(self, item: WorkItem, *, description: Description | None = None) -> dict[str, Any]:
        """Enrich one image into an assets row.

        Args:
            item: the image.
            description: a description obtained by an earlier attempt (not paid for again).

        Raises:
            _StageFailure: the image failed at one stage (read, prepare, describe, embed).
            FatalProviderError: no image can succeed.
            CatalogAccessError: the catalogue's storage refused the credentials or has no such bucket.
        """
        stage = "read"
        try:
            data = self.read(item.source_uri)
            stage = "prepare"
            facts, (for_describer, for_embedder) = prepare_images(
                data, [self.describer.image_limits, self.embedder.image_limits]
            )
            del data
            stage = "describe"
            if description is None:
                description = self.describer.describe(for_describer)
            stage = "embed"
            vector = self.embedder.embed_image(for_embedder)
        except (FatalProviderError, CatalogAccessError):
            raise  # no image can succeed: the credentials or the bucket are wrong
        except EnrichmentError as exc:
            raise _StageFailure(stage, exc, description) from exc
        meta = description.metadata
        return {
            "image_id": item.image_id,
            "source_uri": item.source_uri,
            "content_sha256": facts.content_sha256,
            "media_type": facts.media_type,
            "width": facts.width,
            "height": facts.height,
            "size_bytes": facts.size_bytes,
            "batch": item.batch or self.batch,
            "attributes": item.attributes,
            "title": meta.title,
            "description": meta.description,
            "keywords": meta.keywords,
            "tags": meta.tags,
            "ocr_texts": meta.ocr_texts,
            "embedding": vector.astype("float32").tolist(),
            "embedding_dim": int(vector.shape[0]),
            "enrichment_model": self.describer.model_id,
            "embedding_model": self.embedder.model_id,
            "prompt_version": self.describer.prompt_version,
            "input_tokens": description.input_tokens,
            "output_tokens": description.output_tokens,
            "run_id": self.run_id,
            "enriched_at": datetime.now(timezone.utc),
        }


def assets_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ASSETS_SCHEMA)


def failures_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=FAILURES_SCHEMA)


#: A staged file's footer (Parquet key-value metadata) says what it holds: ``_STAGED_INFO``,
#: JSON with the chunk's key, its writer and its counts, and ``_STAGED_FAILURES``, the chunk's
#: failure rows (an Arrow IPC stream, base64). One file per entry, so an entry is whole or absent.
_STAGED_INFO = b"media_enrichment.staged"
_STAGED_FAILURES = b"media_enrichment.failures"
_STAGED_FORMAT = 1
_STAGED_SUFFIX = ".parquet"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedChunk:
    """A finished chunk waiting for the merge: one Parquet file, ``assets_path``, whose rows are
    the chunk's assets rows and whose footer holds its failure rows and counts."""

    key: str
    assets_path: str
    enriched: int
    failed: int
    input_tokens: int
    output_tokens: int
    writer: str = ""  # who staged it: the run id and a random suffix, unique per write
    worker: str = ""  # host:pid of the process that ran the chunk task, when known


def staged_path(staging_dir: str | Path, key: str, writer: str) -> str:
    """Where one writer stages a chunk: ``<staging_dir>/<key>.<writer>.parquet`` (a local folder
    or an ``s3://`` prefix). Writers never share a name, so no write replaces another's."""
    return storage.join(staging_dir, f"{key}.{writer}{_STAGED_SUFFIX}")


def _writer_id(run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]", "-", run_id)[:40]
    token = secrets.token_hex(4)
    return f"{safe}-{token}" if safe else token


def _encode_failures(failures: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, FAILURES_SCHEMA) as writer:
        writer.write_table(failures)
    return base64.b64encode(sink.getvalue().to_pybytes())


def stage_chunk(
    result: ChunkResult,
    *,
    staging_dir: str | Path,
    key: str,
    run_id: str = "",
    storage_options: storage.Options = None,
) -> StagedChunk:
    """Stage a chunk's rows and failures as one Parquet file, which appears whole or not at all.

    Args:
        result: the chunk's rows and failure rows.
        staging_dir: the dataset's staging area (``Dataset.staging_dir``).
        key: the chunk's key (``chunk_key``).
        run_id: names the writer in the file's name, with a random suffix: two runs, or two
            attempts, staging the same chunk write two files, and neither replaces the other.
        storage_options: S3 credentials when they do not come from the environment
            (``aws.storage_options``).

    Returns:
        The staged chunk.
    """
    writer = _writer_id(run_id)
    path = staged_path(staging_dir, key, writer)
    failures = failures_table(result.failures)
    info = {
        "format": _STAGED_FORMAT, "key": key, "writer": writer, "enriched": len(result.rows),
        "failed": failures.num_rows, "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
    }
    table = assets_table(result.rows)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _STAGED_INFO: json.dumps(info).encode(), _STAGED_FAILURES: _encode_failures(failures)}
    )
    storage.make_dirs(staging_dir)
    storage.write_parquet(table, path, options=storage_options)
    return StagedChunk(
        key=key, assets_path=path, enriched=info["enriched"], failed=info["failed"],
        input_tokens=info["input_tokens"], output_tokens=info["output_tokens"], writer=writer,
    )


class _NotAnEntry(ValueError):
    """A file in the staging area that is not a complete staged chunk."""


def _read_entry(path: str, *, key: str | None, storage_options: storage.Options) -> tuple[StagedChunk, pa.Table]:
    """A staged file's chunk and failure rows.

    Raises:
        FileNotFoundError: the file is gone (committed and removed by a run meanwhile).
        ValueError: the file is not a complete staged chunk (cut short, from an older layout,
            or its footer disagrees with its rows).
    """
    with storage.parquet_file(path, options=storage_options) as file:  # ArrowInvalid (a ValueError) if cut short
        footer = file.schema_arrow.metadata or {}
        rows = file.metadata.num_rows
    if _STAGED_INFO not in footer or _STAGED_FAILURES not in footer:
        raise _NotAnEntry("no staging footer (an older layout, or not written by this pipeline)")
    info = json.loads(footer[_STAGED_INFO])
    failures = pa.ipc.open_stream(base64.b64decode(footer[_STAGED_FAILURES], validate=True)).read_all()
    if info.get("format") != _STAGED_FORMAT or (key is not None and info.get("key") != key):
        raise _NotAnEntry(f"format {info.get('format')!r}, key {info.get('key')!r}")
    if info.get("enriched") != rows or info.get("failed") != failures.num_rows:
        raise _NotAnEntry(f"footer says {info.get('enriched')} rows and {info.get('failed')} failures, file holds {rows} and {failures.num_rows}")
    chunk = StagedChunk(
        key=info["key"], assets_path=path, enriched=rows, failed=failures.num_rows,
        input_tokens=int(info["input_tokens"]), output_tokens=int(info["output_tokens"]), writer=str(info["writer"]),
    )
    return chunk, failures.cast(FAILURES_SCHEMA)


def find_staged(*, staging_dir: str | Path, key: str, storage_options: storage.Options = None) -> StagedChunk | None:
    """A complete staged entry of this chunk, whoever wrote it: an earlier attempt, a run that
    died before its commit, or a run going on at the same time (its rows are the same: the key
    covers the images' content and the models).

    A file that vanishes while it is read was committed by the run that removed it, and is
    passed over. A file that is not a complete entry (cut short, or of an older layout) is
    ignored and deleted: files are written under a temporary name, or uploaded whole, so one
    under its final name is never still being written.

    Returns:
        The first complete entry by name, or None: the chunk must be enriched.
    """
    for path in storage.list_files(staging_dir, prefix=f"{key}.", suffix=_STAGED_SUFFIX, options=storage_options):
        try:
            return _read_entry(path, key=key, storage_options=storage_options)[0]
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignoring and deleting %s, not a complete staged chunk: %s", path, exc)
            storage.delete(path, options=storage_options)
    return None


def staged_failures(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> pa.Table:
    """The failure rows of staged chunks, as one table (small: read from the files' footers).
    A chunk whose file is gone was committed, failures included, by the run that removed it."""
    tables = []
    for chunk in chunks:
        try:
            tables.append(_read_entry(chunk.assets_path, key=None, storage_options=storage_options)[1])
        except FileNotFoundError:
            continue
    return pa.concat_tables(tables) if tables else FAILURES_SCHEMA.empty_table()


def staged_image_ids(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> list[str]:
    """The ids of the images enriched in staged chunks (reads one column only); a chunk whose
    file is gone (committed by the run that removed it) is left out."""
    ids: list[str] = []
    for chunk in chunks:
        try:
            ids += storage.read_parquet(chunk.assets_path, columns=["image_id"], options=storage_options).column(0).to_pylist()
        except FileNotFoundError:
            continue
    return ids


def group_staged(chunks: Sequence[StagedChunk], *, max_rows: int) -> list[list[StagedChunk]]:
    """Consecutive groups of staged chunks holding at most ``max_rows`` enriched rows each (a
    chunk larger than that is a group of its own); chunks without rows are left out."""
    groups: list[list[StagedChunk]] = []
    rows = 0
    for chunk in chunks:
        if not chunk.enriched:
            continue
        if not groups or rows + chunk.enriched > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(chunk)
        rows += chunk.enriched
    return groups


def commit_staged(dataset: Dataset, chunks: Sequence[StagedChunk], *, metadata: dict[str, Any]) -> int | None:
    """Upsert the rows of staged chunks into the assets table in one commit.

    Another run may commit a chunk it shares with this one (same key) and remove its file
    meanwhile; its rows are then in the table already. So a commit that fails while one of
    its files has vanished is made again without it (a failed write commits nothing).

    Returns:
        The new table version, or None when no rows were left to commit.
    """
    options = dataset.storage_options
    pending = list(chunks)
    while True:
        try:
            return dataset.merge_assets_from_parquet([c.assets_path for c in pending], metadata=metadata)
        except Exception:
            left = [c for c in pending if storage.exists(c.assets_path, options=options)]
            if len(left) == len(pending):
                raise
            logger.info("%d staged file(s) were committed by another run meanwhile", len(pending) - len(left))
            pending = left


def remove_staged(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> None:
    """Delete the staged files of committed chunks (this run's, or those it committed); a file
    already gone is fine."""
    for chunk in chunks:
        storage.delete(chunk.assets_path, options=storage_options)
