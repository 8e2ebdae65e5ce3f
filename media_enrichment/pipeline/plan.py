"""Planning a run: which catalogue images need the models, and in which chunks.

``plan_work`` keeps the catalogue images whose stored row cannot be reused (same content hash,
models, prompt version and vector size): it reads and hashes the images the dataset holds a
reusable row or a spent failure of, since only their bytes decide; an image id the dataset has
never kept is work whatever its bytes, and is read once, by the run that enriches it (unless
``hash_new``). ``split_chunks`` cuts the work into chunks. Images the plan cannot read become
failure rows (``failure_row``) here already.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from media_enrichment.catalog import Catalog
from media_enrichment.errors import ImageError, RejectedRequestError
from media_enrichment.providers.base import Describer, Embedder

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
    #: The SHA-256 of the bytes the plan read; None: the plan did not read the image (a new id),
    #: and the run hashes the bytes it reads to enrich it.
    content_sha256: str | None
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
    batch: str | None = None  # the run's batch label: the setting, else the catalogue's default


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


#: Most images one hashing task reads in a row (``plan_work``).
_HASH_RUN = 32


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
    hash_new: bool = True,
) -> Plan:
    """Keep the catalogue images whose stored row cannot be reused, hashing those whose bytes decide.

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
        hash_new: read and hash every image, also those whose id the dataset holds no reusable
            row or spent failure of (batch inference names its records by the content hash
            before any image is read). False: such images are planned unread, with no hash
            (``WorkItem.content_sha256`` None), but for the first of them, read as a check of
            the catalogue's storage: an on-demand run reads each image once, to enrich it, and
            hashes those bytes (an S3 catalogue: one GET a new image, not two).

    Returns:
        The plan; images it could not read are in ``failures``.

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

    uris = list(frame["source_uri"])
    if hash_new:
        read_at = range(len(uris))
    else:
        # Only bytes the dataset holds a row or a spent failure of can make an image's work
        # unnecessary; the first new image is read as well, so that refused credentials stop
        # the run here, before any model is called (CatalogAccessError).
        decide = {image_id for image_id, _ in reusable | exhausted}
        seen = [image_id in decide for image_id in frame["image_id"]]
        first_new = next((i for i, known in enumerate(seen) if not known), None)
        read_at = [i for i, known in enumerate(seen) if known or i == first_new]
    # Runs of images per task: a task per image costs more in futures than reading and hashing
    # a small image does; the runs still spread the reads over every thread.
    run = max(1, min(_HASH_RUN, len(read_at) // max(1, 4 * workers)))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        runs = pool.map(
            lambda start: [digest(uris[i]) for i in read_at[start : start + run]], range(0, len(read_at), run)
        )
        digests: list[str | BaseException | None] = [None] * len(uris)  # None: not read
        for i, result in zip(read_at, (d for part in runs for d in part), strict=True):
            digests[i] = result

    plan = Plan(items=[], reused=0, total=len(frame), batch=default_batch)
    batches = frame["batch"].astype(str) if "batch" in frame.columns else [None] * len(frame)
    for image_id, uri, result, attrs, batch in zip(frame["image_id"], frame["source_uri"], digests, attributes, batches):
        if isinstance(result, BaseException):
            plan.failures.append(failure_row(image_id=image_id, source_uri=uri, stage="read", error=result, run_id=run_id))
        elif result is not None and (image_id, result) in reusable:
            plan.reused += 1
        elif result is not None and (image_id, result) in exhausted:
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
