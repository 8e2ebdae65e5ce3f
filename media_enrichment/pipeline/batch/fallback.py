"""What the batch jobs did not answer usably: made on demand, or failure rows.

A call whose record came back ``error``, ``invalid`` or ``missing``, or whose job ended without
results, goes on demand with ``batch_fallback=on-demand`` (``complete_on_demand``: the
describer's own corrective turns, and what a job did give is kept), or becomes the image's
failure row with ``fail`` (``fail_row``: a ``BatchRecordError``). Calls never batched (not
batchable, or fewer records than a job's minimum) are always on demand. Nothing is dropped.
"""

from __future__ import annotations

import random
from typing import Any

from media_enrichment.batch.errors import BatchError
from media_enrichment.batch.records import DESCRIBE, EMBED
from media_enrichment.errors import CatalogAccessError, EnrichmentError, FatalProviderError, RetryableProviderError
from media_enrichment.pipeline.batch.context import BatchContext, BatchImage
from media_enrichment.pipeline.execution import ChunkResult, asset_row

__all__ = ["BatchRecordError", "complete_on_demand", "fail_row"]


class BatchRecordError(BatchError):
    """A record a batch job did not answer usably (its failure row's error, with ``batch_fallback=fail``)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def fail_row(ctx: BatchContext, image: BatchImage) -> dict[str, Any] | None:
    """With ``batch_fallback=fail``, the failure row of an image whose batched calls were not all
    answered usably (its description's problem first); None: nothing fails."""
    fallback = ctx.settings.batch_fallback == "on-demand"
    failed = {kind: why for kind, why in image.problems.items() if not fallback and kind not in image.on_demand_only}
    if not failed:
        return None
    kind = DESCRIBE if DESCRIBE in failed else EMBED
    code, _, message = failed[kind].partition("\t")
    return ctx.failure(image.item, stage=kind, error=BatchRecordError(message, code=code))


def complete_on_demand(ctx: BatchContext, image: BatchImage, result: ChunkResult) -> dict[str, Any] | None:
    """Make on demand what the jobs did not give, keeping what they did: a vector is kept, a
    description is kept (only Titan is called), and an unusable description is followed by
    a corrective turn (``BedrockDescriber.describe(prior=...)``), not asked again from scratch.
    Transient errors get the run's transient retries; other errors are the image's failure row
    (into ``result``; None is returned).
    """
    services = ctx.services
    item = image.item
    stage = "read"
    retries = services.retries.transient_retries
    description, vector = image.description, image.vector
    for attempt in range(retries + 1):
        try:
            stage = "read"
            data = services.read(item.source_uri)
            stage = "prepare"
            facts, (for_describer, for_embedder) = ctx.prepare(data, item)
            del data
            stage = "describe"
            if description is None:
                if image.prior is not None:
                    description = services.describer.describe(for_describer, prior=image.prior)  # type: ignore[call-arg]
                else:
                    description = services.describer.describe(for_describer)
            stage = "embed"
            if vector is None:
                vector = services.embedder.embed_image(for_embedder)
            break
        except (FatalProviderError, CatalogAccessError):
            raise
        except RetryableProviderError as exc:
            if attempt < retries:
                ctx.sleep(services.retries.pass_delay_s * 2**attempt * random.uniform(0.5, 1.5))
                continue
            error: EnrichmentError = exc
        except EnrichmentError as exc:
            error = exc
        result.failures.append(ctx.failure(item, stage=stage, error=error, attempts=attempt + 1))
        return None
    return asset_row(
        item, facts, description, vector, describer=services.describer, embedder=services.embedder,
        run_id=ctx.run_id, batch=ctx.settings.batch,
    )
