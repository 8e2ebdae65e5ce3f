"""What happens to images between the catalogue and the dataset, without orchestration.

The flow calls these in order: ``plan_work`` (hash, skip what is stored), ``split_chunks``,
``ChunkEnricher.enrich`` per chunk (read, prepare, describe, embed; per-image errors become
failure rows), ``stage_chunk``, then ``Dataset.merge_assets_from_parquet`` over the staged files.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from media_enrichment import storage
from media_enrichment.catalog import Catalog
from media_enrichment.errors import (
    EnrichmentError,
    FatalProviderError,
    ImageError,
    RejectedRequestError,
    RetryableProviderError,
)
from media_enrichment.images import prepare_images
from media_enrichment.providers.base import Describer, Description, Embedder
from media_enrichment.schema import ASSETS_SCHEMA, FAILURES_SCHEMA

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
    """
    frame = catalog.frame
    attributes = _attributes(catalog)

    def digest(uri: str) -> str | BaseException:
        try:
            return sha256_hex(read(uri))
        except ImageError as exc:
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
        except FatalProviderError:
            raise
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


@dataclass(frozen=True)
class StagedChunk:
    """Where a finished chunk's results wait for the merge, and what they hold."""

    key: str
    assets_path: str
    failures_path: str
    enriched: int
    failed: int
    input_tokens: int
    output_tokens: int
    worker: str = ""  # host:pid of the process that ran the chunk task, when known


def staged_paths(staging_dir: str | Path, key: str) -> tuple[str, str]:
    """Where a chunk's rows and failures are staged (a local folder or an ``s3://`` prefix)."""
    return storage.join(staging_dir, f"{key}.assets.parquet"), storage.join(staging_dir, f"{key}.failures.parquet")


def stage_chunk(
    result: ChunkResult, *, staging_dir: str | Path, key: str, storage_options: storage.Options = None
) -> StagedChunk:
    """Write a chunk's rows and failures to Parquet, each file whole or not at all; the assets
    file last, so that its presence means the chunk is complete. ``storage_options``: S3
    credentials when they do not come from the environment (``aws.storage_options``)."""
    storage.make_dirs(staging_dir)
    assets_path, failures_path = staged_paths(staging_dir, key)
    storage.write_parquet(failures_table(result.failures), failures_path, options=storage_options)
    storage.write_parquet(assets_table(result.rows), assets_path, options=storage_options)
    return StagedChunk(
        key=key,
        assets_path=assets_path,
        failures_path=failures_path,
        enriched=len(result.rows),
        failed=len(result.failures),
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
    )


def find_staged(*, staging_dir: str | Path, key: str, storage_options: storage.Options = None) -> StagedChunk | None:
    """A chunk already staged by an earlier attempt (its assets file is written last)."""
    assets_path, failures_path = staged_paths(staging_dir, key)
    if not storage.exists(assets_path, options=storage_options):
        return None
    assets = storage.read_parquet(assets_path, columns=["input_tokens", "output_tokens"], options=storage_options)
    return StagedChunk(
        key=key,
        assets_path=assets_path,
        failures_path=failures_path,
        enriched=assets.num_rows,
        failed=storage.parquet_file(failures_path, options=storage_options).metadata.num_rows,
        input_tokens=int(pc.sum(assets.column("input_tokens")).as_py() or 0),
        output_tokens=int(pc.sum(assets.column("output_tokens")).as_py() or 0),
    )


def staged_failures(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> pa.Table:
    """The failure rows of staged chunks, as one table (small: no vectors)."""
    tables = [storage.read_parquet(c.failures_path, schema=FAILURES_SCHEMA, options=storage_options) for c in chunks]
    return pa.concat_tables(tables) if tables else FAILURES_SCHEMA.empty_table()


def staged_image_ids(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> list[str]:
    """The ids of the images enriched in staged chunks (reads one column only)."""
    return [
        i
        for c in chunks
        for i in storage.read_parquet(c.assets_path, columns=["image_id"], options=storage_options).column(0).to_pylist()
    ]


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


def remove_staged(chunks: Sequence[StagedChunk], *, storage_options: storage.Options = None) -> None:
    """Delete staged files once their rows are committed."""
    for chunk in chunks:
        for path in (chunk.assets_path, chunk.failures_path):
            storage.delete(path, options=storage_options)
