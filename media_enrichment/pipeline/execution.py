"""How the model calls of a chunk are executed: the ``Executor`` interface and its on-demand kind.

An executor turns a chunk of ``WorkItem``s into a ``ChunkResult``: an assets row per image that
succeeded and a failure row per image that did not. What it must keep, whatever its way of
calling the models (one image at a time per chunk thread here; a per-model window of calls in
flight or Bedrock batch jobs next):

* a per-image error (unreadable image, refused request, transient provider error once its
  retries are spent, unusable answer) becomes that image's failure row and never fails the
  chunk: the retries of the layer above (Prefect's task retries) are not spent on model calls;
* errors no image can escape (``FatalProviderError``, ``CatalogAccessError``) are raised;
* ``versions`` names the models and prompt whose rows it writes (the chunk's staging key).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from media_enrichment.errors import CatalogAccessError, EnrichmentError, FatalProviderError, RetryableProviderError
from media_enrichment.images import prepare_images
from media_enrichment.pipeline.plan import ModelVersions, Reader, WorkItem, failure_row
from media_enrichment.providers.base import Describer, Description, Embedder


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


@runtime_checkable
class Executor(Protocol):
    """The way a chunk's model calls are executed (see the module docstring for its contract)."""

    @property
    def versions(self) -> ModelVersions:
        """The models and prompt version of the rows it writes."""
        ...

    def enrich(self, items: Sequence[WorkItem], *, result: ChunkResult | None = None) -> ChunkResult:
        """Enrich a chunk: a row or a failure row per item.

        Args:
            items: the chunk's images.
            result: what an interrupted attempt at this chunk did: its images are not enriched
                again, and rows are added to it as they are made, so the caller keeps them if
                this attempt is interrupted too.

        Raises:
            FatalProviderError: no image can succeed (access denied, unknown model).
            CatalogAccessError: the catalogue's storage refused the credentials.
        """
        ...


class _StageFailure(Exception):
    """One image failed at one stage; carries what was already paid for (the description)."""

    def __init__(self, stage: str, error: EnrichmentError, description: Description | None):
        super().__init__(str(error))
        self.stage, self.error, self.description = stage, error, description


@dataclass
class ChunkEnricher:
    """The on-demand ``Executor``: one image at a time per chunk (read, prepare, describe, embed),
    with one describer and one embedder; chunks run side by side on the orchestrator's threads
    or workers.

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

    def enrich(self, items: Sequence[WorkItem], *, result: ChunkResult | None = None) -> ChunkResult:
        """Enrich every item; a per-image error becomes a failure row.

        Args:
            items: the chunk's images.
            result: an interrupted attempt's result: images it holds a row or a failure row of
                are skipped; new rows are added to it as they are made.

        Returns:
            ``result`` (or a new one) with a row or a failure row per item.

        Raises:
            FatalProviderError: no image can succeed (access denied, unknown model).
            CatalogAccessError: the catalogue's storage refused the credentials or has no such bucket.
        """
        result = ChunkResult() if result is None else result
        done = {row["image_id"] for row in result.rows} | {row["image_id"] for row in result.failures}
        pending: list[tuple[WorkItem, Description | None]] = [(item, None) for item in items if item.image_id not in done]
        if not pending:
            return result
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
