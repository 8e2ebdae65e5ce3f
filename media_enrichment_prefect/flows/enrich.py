"""The enrichment flow: catalogue -> chunks of retrying tasks -> upserts into Delta."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from media_enrichment.aws import storage_options
from media_enrichment.config import ProviderName, Settings, TaskRunnerName, build_settings
from media_enrichment.cost import load_prices, run_cost
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline import ModelVersions, StagedChunk, WorkItem, split_chunks
from media_enrichment.storage import is_remote
from media_enrichment_prefect.tasks.aws import run_region
from media_enrichment_prefect.tasks.chunk_job import ChunkJob, release_services, services_for
from media_enrichment_prefect.tasks.enrichment import enrich_chunk, load_catalog_rows, merge_results, plan_enrichment
from media_enrichment_prefect.tasks.reporting import RunProgress, publish_report

# The window of chunks in flight is bounded by the `concurrency` parameter; the pool only
# needs to be at least that large.
_MAX_THREADS = 256


def _run_chunks(
    chunks: list[list[WorkItem]], *, job: ChunkJob, tracker: RunProgress, runner: TaskRunner | None = None
) -> list[StagedChunk]:
    """Submit chunk tasks with at most ``concurrency`` in flight; report progress as each ends.

    ``runner``: a started task runner for the chunks (Dask); None for the flow's own threads.
    """
    staged: list[StagedChunk] = []
    in_flight: dict[PrefectFuture, int] = {}
    queue = iter(chunks)

    def submit(items: list[WorkItem]) -> PrefectFuture:
        if runner is None:
            return enrich_chunk.submit(items, job=job)
        return runner.submit(enrich_chunk, parameters={"items": items, "job": job})

    def fill() -> None:
        for items in queue:
            in_flight[submit(items)] = len(items)
            if len(in_flight) >= job.settings.concurrency:
                return

    fill()
    while in_flight:
        future = next(as_completed(list(in_flight)))
        size = in_flight.pop(future)
        staged.append(future.result())  # raises after the task's retries are spent
        tracker.advance(size)
        fill()
    return staged


def task_runner_for(settings: Settings) -> TaskRunner:
    """The task runner the settings ask for: threads in this process (the default), or Dask.

    Dask runs the chunk tasks in worker processes: those of the cluster at ``dask_address``,
    or of a local cluster of ``dask_workers`` processes started for the run, with enough
    threads between them for ``concurrency`` chunks at once.
    """
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=_MAX_THREADS)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": max(1, math.ceil(settings.concurrency / settings.dask_workers)),
            "processes": True,
            "dashboard_address": None,
        }
    )


@flow(name="enrich-catalog", task_runner=ThreadPoolTaskRunner(max_workers=_MAX_THREADS))
def enrich_catalog(
    source: str,
    dataset: str | None = None,
    provider: ProviderName | None = None,
    chunk_size: int | None = None,
    concurrency: int | None = None,
    embedding_dim: int | None = None,
    limit: int | None = None,
    force: bool | None = None,
    batch: str | None = None,
    retry_failures: bool | None = None,
    task_runner: TaskRunnerName | None = None,
) -> dict[str, Any]:
    """Enrich a catalogue of images (describe, embed) and merge it into the Delta dataset.

    A parameter left out (None) takes the ``MEDIA_ENRICH_*`` setting of the process running the
    flow, else the default in ``media_enrichment.config.Settings``; the summary's ``settings``
    shows what the run used.
    """
    started = time.perf_counter()
    # Checked before anything is read or called: a bad value names its parameter or variable.
    settings = build_settings(
        {
            "dataset": dataset, "provider": provider, "chunk_size": chunk_size, "concurrency": concurrency,
            "embedding_dim": embedding_dim, "limit": limit, "force": force, "batch": batch,
            "retry_failures": retry_failures, "task_runner": task_runner,
        }
    )
    run_id = str(flow_run.get_id() or uuid.uuid4())
    store = Dataset(settings.dataset)
    job = ChunkJob(
        settings=settings, run_id=run_id, versions=None, staging_dir=store.staging_dir, reads_s3=source.startswith("s3://")
    )
    try:
        return _enrich(source, settings=settings, job=job, store=store, started=started)
    finally:
        release_services(job)


def _enrich(source: str, *, settings: Settings, job: ChunkJob, store: Dataset, started: float) -> dict[str, Any]:
    logger = get_run_logger()
    run_id = job.run_id
    prices = load_prices(settings.price_file)  # a bad price file stops the run before it pays
    services = services_for(job)  # the chunk tasks of this process share these
    if services.storage_options:  # an AwsCredentials block's identity writes the S3 dataset too
        store = Dataset(store.root, storage_options=services.storage_options)
    elif is_remote(store.root):  # delta-rs would not see MEDIA_ENRICH_AWS_REGION or a profile's region
        store = Dataset(store.root, storage_options=storage_options(None, region=run_region(settings)))
    describer, embedder, read = services.enricher.describer, services.enricher.embedder, services.enricher.read
    versions = ModelVersions.of(describer, embedder)
    job = dataclasses.replace(job, versions=versions)

    catalog = load_catalog_rows(source, limit=settings.limit, batch=settings.batch, s3_client=services.s3)
    batch_label = settings.batch or catalog.default_batch
    plan = plan_enrichment(
        catalog, dataset=store, versions=versions, read=read, run_id=run_id, settings=settings, default_batch=batch_label
    )
    logger.info(
        "Catalogue %s: %d images, %d already enriched, %d to enrich, %d unreadable, %d failed before and left alone",
        source, plan.total, plan.reused, len(plan.items), len(plan.failures), len(plan.given_up),
    )
    tracker = RunProgress(total=len(plan.items), dataset=settings.dataset)
    if plan.items:
        # Stop before the catalogue is attempted if no image could succeed (access, model id).
        describer.check_access()
        embedder.check_access()

    chunks = split_chunks(plan.items, settings.chunk_size)
    if settings.task_runner == "threads":
        chunk_runner = type(FlowRunContext.get().task_runner).__name__
        staged = _run_chunks(chunks, job=job, tracker=tracker)
    else:  # chosen per run, by a parameter or the worker's environment, not when the flow is declared
        with task_runner_for(settings) as runner:
            chunk_runner = type(runner).__name__
            staged = _run_chunks(chunks, job=job, tracker=tracker, runner=runner)

    workers = sorted({c.worker for c in staged if c.worker})
    enriched = sum(c.enriched for c in staged)
    failed = sum(c.failed for c in staged) + len(plan.failures)
    input_tokens = sum(c.input_tokens for c in staged)
    output_tokens = sum(c.output_tokens for c in staged)
    versions_written = {"assets_version": None, "failures_version": None}
    if staged or plan.failures:
        metadata = {
            "run_id": run_id,
            "flow_run_name": flow_run.get_name(),
            **versions.as_metadata(),
            "batch": batch_label,
            "source": source,
            "catalog_rows": plan.total,
            "reused": plan.reused,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        versions_written = merge_results(
            staged, dataset=store, plan_failures=plan.failures, metadata=metadata, commit_rows=settings.commit_rows
        )

    duration = time.perf_counter() - started
    summary = {
        "run_id": run_id,
        "source": source,
        "dataset": settings.dataset,
        "batch": batch_label,
        "catalog_rows": plan.total,
        "reused": plan.reused,
        "enriched": enriched,
        "failed": failed,
        "given_up": len(plan.given_up),
        "chunks": len(chunks),
        "task_runner": chunk_runner,
        "workers": workers,  # host:pid of the processes that ran chunk tasks
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **versions_written,
        "estimated_cost_usd": run_cost(
            enrichment_model=versions.enrichment_model, embedding_model=versions.embedding_model,
            input_tokens=input_tokens, output_tokens=output_tokens, images=enriched,
            prices=prices,
        ),
        "rate_control": {
            name: provider.gate.stats()
            for name, provider in (("describer", describer), ("embedder", embedder))
            if getattr(provider, "gate", None) is not None
        },
        "duration_s": round(duration, 3),
        "images_per_s": round(enriched / duration, 2) if duration > 0 else None,
        **versions.as_metadata(),
        "settings": settings.model_dump(mode="json"),  # what the run used, wherever each value came from
    }
    summary["heatmap"] = publish_report(summary, dataset=store)
    logger.info("Enriched %d, reused %d, failed %d in %.1f s", enriched, plan.reused, failed, duration)
    return summary
