"""Joining a run's batch answers into rows, and its rows into staged chunks.

``stage_ready`` stages a chunk (``stage_chunk``) as soon as none of its images waits for a job:
an image with both answers from its jobs becomes its row through ``execution.asset_row`` (the
on-demand row builder; an image whose jobs were picked up from a record, and so not read by this
run, is read again for its facts), an image that failed to read or prepare its failure row, and
what the jobs did not give goes to the ``fallback`` (descriptions to the run's on-demand
executor, a missing vector or a corrective turn to ``complete_on_demand``). The counts of the
outcome are added up into ``Stats`` on the way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from media_enrichment.batch.records import DESCRIBE, EMBED
from media_enrichment.images import SourceFacts, inspect_image
from media_enrichment.pipeline.batch.context import BatchContext, BatchImage, OpenChunks
from media_enrichment.pipeline.batch.fallback import complete_on_demand, fail_row
from media_enrichment.pipeline.batch.outcome import Stats
from media_enrichment.pipeline.execution import ChunkResult, asset_row
from media_enrichment.pipeline.staging import StagedChunk, stage_chunk

__all__ = ["stage_ready"]


def stage_ready(ctx: BatchContext, open_chunks: OpenChunks, images: dict[str, BatchImage], stats: Stats) -> list[StagedChunk]:
    """Stage every chunk whose images have all their answers (or will get none from a job); the
    staged chunks are taken out of ``open_chunks``."""
    done: list[StagedChunk] = []
    for entry in list(open_chunks):
        key, chunk = entry
        if any(images[item.image_id].needed for item in chunk):
            continue
        result = ChunkResult()
        on_demand = [item for item in chunk if not _finish(ctx, images[item.image_id], result, stats)]
        if on_demand:
            # Descriptions the jobs did not give: the on-demand executor does them all (its image
            # threads, its transient retries, the describer's corrective turns).
            stats.on_demand += len(on_demand)
            ctx.services.executor.enrich(on_demand, result=result)
        done.append(stage_chunk(result, staging_dir=ctx.staging_dir, key=key, run_id=ctx.run_id, storage_options=ctx.options))
        open_chunks.remove(entry)
    return done


def _finish(ctx: BatchContext, image: BatchImage, result: ChunkResult, stats: Stats) -> bool:
    """The image's row or failure row into ``result``, from its batch answers (a vector the
    job did not give is made on demand); False: its description must be made on demand."""
    if image.failure is not None:
        result.failures.append(image.failure)
        return True
    refused = fail_row(ctx, image)
    if refused is not None:
        result.failures.append(refused)
        return True
    missing = {DESCRIBE, EMBED} - image.from_batch
    if DESCRIBE in missing and image.prior is None:
        return False
    if not missing:
        row = _row(ctx, image)
        if row is None:
            result.failures.append(image.failure)  # type: ignore[arg-type]
            return True
        result.rows.append(row)
    else:
        stats.on_demand += 1
        row = complete_on_demand(ctx, image, result)
        if row is None:
            return True
        result.rows.append(row)
    if DESCRIBE in image.from_batch and image.description is not None:
        stats.described += 1
        stats.input_tokens += image.description.input_tokens
        stats.output_tokens += image.description.output_tokens
    if EMBED in image.from_batch:
        stats.embedded += 1
    return True


def _facts(ctx: BatchContext, image: BatchImage) -> SourceFacts | None:
    """The facts of an image this run did not read (its jobs were picked up from a record):
    read and checked again (``inspect_image``: no re-encoding), with the plan's hash."""
    sha = image.item.content_sha256
    return ctx.read_image(image, lambda data: dataclasses.replace(inspect_image(data), content_sha256=sha))


def _row(ctx: BatchContext, image: BatchImage) -> dict[str, Any] | None:
    if image.facts is None:  # a job picked up from a record: this run never read the image
        image.facts = _facts(ctx, image)
        if image.facts is None:
            return None
    assert image.description is not None and image.vector is not None
    return asset_row(
        image.item, image.facts, image.description, image.vector, describer=ctx.services.describer,
        embedder=ctx.services.embedder, run_id=ctx.run_id, batch=ctx.settings.batch,
    )
