"""Backfills: one enrichment run per batch, launched through the backfill deployment.

Each run is created with an idempotency key made of the deployment, dataset, source and batch,
so launching the same backfill again returns the runs it already created instead of starting
new ones. The backfill deployment's concurrency limit caps how many run at once.

Only the values given for the backfill (dataset, provider, further parameters) are sent with the
runs; everything else is resolved where each run executes (``serve`` or a worker), from that
process's ``MEDIA_ENRICH_*`` environment, then the defaults of ``Settings``.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import PurePosixPath
from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from media_enrichment.catalog import MANIFEST_SUFFIXES, load_catalog
from media_enrichment.config import InvocationName, ProviderName, build_settings
from media_enrichment.errors import CatalogError

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


def check_backfill_source(source: str, batch_list: list[str], *, s3_client: Any = None) -> None:
    """Refuse a backfill that would not enrich what its batches name, before any run is created.

    A source with ``{batch}`` in it must give, for every batch, a catalogue that loads (as the
    run will load it). Any other source must be a manifest with a ``batch`` column holding every
    batch: a run of a batch the manifest does not label would enrich the whole catalogue.

    Args:
        source: the backfill's source (manifest, or folder/prefix template).
        batch_list: the batch labels.
        s3_client: a boto3 S3 client, for ``s3://`` sources.

    Raises:
        CatalogError: the source is unusable, has no ``batch`` column, or a batch has no rows.
    """
    if "{batch}" in source:
        for batch in batch_list:
            load_catalog(batch_source(source, batch), s3_client=s3_client, batch=batch)
        return
    if PurePosixPath(source).suffix.lower() not in MANIFEST_SUFFIXES:
        raise CatalogError(
            f"a backfill needs a manifest with a 'batch' column or a folder/prefix with {{batch}} in it, not {source}: "
            "each batch's run would enrich all of it"
        )
    frame = load_catalog(source, s3_client=s3_client).frame
    if "batch" not in frame.columns:
        raise CatalogError(
            f"the manifest has no 'batch' column: {source} (add one, or give a folder/prefix with {{batch}} in it)"
        )
    present = set(frame["batch"].astype(str))
    missing = [b for b in batch_list if b not in present]
    if missing:
        known = ", ".join(sorted(present)[:10]) + (", ..." if len(present) > 10 else "")
        raise CatalogError(
            f"no rows of batch(es) {', '.join(missing)} in the manifest {source}; its batches: {known}"
        )


def idempotency_key(*, deployment: str, dataset: str, source: str, batch: str) -> str:
    digest = hashlib.sha256("\n".join([deployment, dataset, source, batch]).encode()).hexdigest()[:32]
    return f"backfill-{digest}"


def launch_backfill(
    *,
    source: str,
    batch_list: list[str],
    dataset: str | None = None,
    provider: str | None = None,
    deployment: str = BACKFILL_DEPLOYMENT,
    parameters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Create one flow run of ``deployment`` per batch (at most once per batch, ever).

    Args:
        source: a manifest (with a ``batch`` column) or a folder/prefix template with ``{batch}``.
        batch_list: the batch labels.
        dataset: the dataset root; ``None``: the one the executing process's settings name.
        provider: ``local`` or ``bedrock``; ``None``: likewise from its settings.
        deployment: ``flow-name/deployment-name`` of the enrichment deployment.
        parameters: further flow parameters (chunk_size, concurrency…); ``None`` values are
            left out, so the executing process's settings fill them.

    Returns:
        One record per batch: batch, flow run id and name, state.
    """
    given = {k: v for k, v in {**(parameters or {}), "dataset": dataset, "provider": provider}.items() if v is not None}
    launched = []
    for batch in batch_list:
        resolved = batch_source(source, batch)
        run = run_deployment(
            deployment,
            parameters={**given, "source": resolved, "batch": batch},
            idempotency_key=idempotency_key(
                deployment=deployment, dataset=given.get("dataset", ""), source=resolved, batch=batch
            ),
            timeout=0,  # create the run; the deployment's workers or `serve` execute it
            as_subflow=False,
            tags=["backfill", f"batch:{batch}"],
        )
        launched.append({"batch": batch, "flow_run_id": str(run.id), "flow_run_name": run.name, "state": run.state_name})
    return launched


@flow(name="backfill-catalog")
def backfill_catalog(
    source: str,
    dataset: str | None = None,
    provider: ProviderName | None = None,
    batches: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    deployment: str = BACKFILL_DEPLOYMENT,
    allowed_roots: list[str] | None = None,
    invocation: InvocationName | None = None,
) -> list[dict[str, Any]]:
    """Launch one enrichment run per batch of a list or date range (idempotent)."""
    labels = batch_labels(batches=batches, start=start, end=end)
    # Bad values stop here.
    settings = build_settings({"dataset": dataset, "provider": provider, "allowed_roots": allowed_roots})
    s3 = None
    if source.startswith("s3://"):
        from media_enrichment.aws import s3_client

        s3 = s3_client(settings)
    check_backfill_source(source, labels, s3_client=s3)
    runs = launch_backfill(
        source=source, batch_list=labels, dataset=dataset, provider=provider, deployment=deployment,
        parameters={"allowed_roots": allowed_roots, **({"invocation": invocation} if invocation else {})},
    )
    get_run_logger().info("Backfill of %d batch(es): %s", len(runs), ", ".join(r["flow_run_name"] for r in runs))
    return runs
