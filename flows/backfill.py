"""Backfills: one enrichment run per batch, launched through the backfill deployment.

Each run is created with an idempotency key made of the deployment, dataset, source and batch,
so launching the same backfill again returns the runs it already created instead of starting
new ones. The backfill deployment's concurrency limit caps how many run at once.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

BACKFILL_DEPLOYMENT = "enrich-catalog/backfill"


def batch_labels(*, batches: list[str] | None = None, start: date | None = None, end: date | None = None) -> list[str]:
    """The batches of a backfill: the given labels, or each day from ``start`` to ``end`` (ISO dates).

    Raises:
        ValueError: neither or both forms were given, or the range is empty.
    """
    if batches and (start or end):
        raise ValueError("give either batches or a date range, not both")
    if batches:
        return list(dict.fromkeys(batches))
    if not (start and end):
        raise ValueError("give batches, or a start and an end date")
    if end < start:
        raise ValueError(f"the date range ends ({end}) before it starts ({start})")
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def batch_source(source: str, batch: str) -> str:
    """The source of one batch: ``{batch}`` in the source is replaced by the batch label."""
    return source.replace("{batch}", batch)


def idempotency_key(*, deployment: str, dataset: str, source: str, batch: str) -> str:
    digest = hashlib.sha256("\n".join([deployment, dataset, source, batch]).encode()).hexdigest()[:32]
    return f"backfill-{digest}"


def launch_backfill(
    *,
    source: str,
    batch_list: list[str],
    dataset: str,
    provider: str = "local",
    deployment: str = BACKFILL_DEPLOYMENT,
    parameters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Create one flow run of ``deployment`` per batch (at most once per batch, ever).

    Args:
        source: a manifest (with a ``batch`` column) or a folder/prefix template with ``{batch}``.
        batch_list: the batch labels.
        dataset: the dataset root.
        provider: ``local`` or ``bedrock``.
        deployment: ``flow-name/deployment-name`` of the enrichment deployment.
        parameters: further flow parameters (chunk_size, concurrency…).

    Returns:
        One record per batch: batch, flow run id and name, state.
    """
    launched = []
    for batch in batch_list:
        resolved = batch_source(source, batch)
        run = run_deployment(
            deployment,
            parameters={**(parameters or {}), "source": resolved, "dataset": dataset, "provider": provider, "batch": batch},
            idempotency_key=idempotency_key(deployment=deployment, dataset=dataset, source=resolved, batch=batch),
            timeout=0,  # create the run; the deployment's workers or `serve` execute it
            as_subflow=False,
            tags=["backfill", f"batch:{batch}"],
        )
        launched.append({"batch": batch, "flow_run_id": str(run.id), "flow_run_name": run.name, "state": run.state_name})
    return launched


@flow(name="backfill-catalog")
def backfill_catalog(
    source: str,
    dataset: str = "data/dataset",
    provider: str = "local",
    batches: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    deployment: str = BACKFILL_DEPLOYMENT,
) -> list[dict[str, Any]]:
    """Launch one enrichment run per batch of a list or date range (idempotent)."""
    labels = batch_labels(batches=batches, start=start, end=end)
    runs = launch_backfill(source=source, batch_list=labels, dataset=dataset, provider=provider, deployment=deployment)
    get_run_logger().info("Backfill of %d batch(es): %s", len(runs), ", ".join(r["flow_run_name"] for r in runs))
    return runs
