"""The enrichment flow: the run driver's steps as Prefect tasks, in order (catalogue -> plan -> chunk tasks -> merge -> report)."""

from __future__ import annotations

import math
import uuid
from typing import Any

from prefect import flow, get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from media_enrichment.config import InvocationName, ProviderName, Settings, TaskRunnerName, build_settings
from media_enrichment.pipeline.batch import BatchOutcome
from media_enrichment.pipeline.budget import RunBudget
from media_enrichment.pipeline.driver import ChunkJob, open_run
from media_enrichment.pipeline.plan import WorkItem
from media_enrichment.pipeline.staging import StagedChunk
from media_enrichment.pipeline.submit import run_windowed
from media_enrichment_prefect.tasks.enrichment import (
    batch_inference,
    enrich_chunk,
    load_catalog_rows,
    merge_results,
    plan_enrichment,
    prefect_inputs,
)
from media_enrichment_prefect.tasks.reporting import BatchJobsProgress, RunProgress, publish_report

# The window of chunks in flight is bounded by `Settings.chunks_in_flight`; the pool only
# needs to be at least that large.
_MAX_THREADS = 256


def _run_chunks(
    chunks: list[list[WorkItem]], *, job: ChunkJob, budget: RunBudget, tracker: RunProgress,
    runner: TaskRunner | None = None,
) -> list[StagedChunk]:
    """Submit chunk tasks, ``chunks_in_flight`` at once and while the run's budget admits them;
    report progress as each ends.

    The chunks only shape orchestration and staging: the calls of a chunk's images run side
    by side, as the models' call windows allow (``media_enrichment.pipeline.execution``).
    ``runner``: a started task runner for the chunks (Dask); None for the flow's own threads.
    """

    def submit(items: list[WorkItem]) -> PrefectFuture:
        if runner is None:
            return enrich_chunk.submit(items, job=job)
        return runner.submit(enrich_chunk, parameters={"items": items, "job": job})

    return run_windowed(
        chunks, submit=submit, next_done=lambda futures: next(as_completed(list(futures))),
        result=lambda future: future.result(), window=job.settings.chunks_in_flight, budget=budget,
        on_done=lambda _staged, size: tracker.advance(size),
    )


def task_runner_for(settings: Settings) -> TaskRunner:
    """The task runner the settings ask for: threads in this process (the default), or Dask.

    Dask runs the chunk tasks in worker processes: those of the cluster at ``dask_address``,
    or of a local cluster of ``dask_workers`` processes started for the run, with enough
    threads between them for ``chunks_in_flight`` chunks at once.
    """
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=_MAX_THREADS)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": max(1, math.ceil(settings.chunks_in_flight / settings.dask_workers)),
            "processes": True,
            "dashboard_address": None,
            # The workers report their task runs to this flow's API: on the embedded default it
            # is the temporary server this process started, which they would not find by
            # themselves (each would try to start its own).
            "env": {"PREFECT_API_URL": _api_url()},
        }
    )


def _api_url() -> str:
    """The Prefect API this process talks to: ``PREFECT_API_URL``, or its temporary server's."""
    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


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
    allowed_roots: list[str] | None = None,
    max_images: int | None = None,
    max_cost_usd: float | None = None,
    invocation: InvocationName | None = None,
    wait_for_batch: bool = True,
    collect_only: bool = False,
) -> dict[str, Any]:
    """Enrich a catalogue of images (describe, embed) and merge it into the Delta dataset.

    A parameter left out (None) takes the ``MEDIA_ENRICH_*`` setting of the process running the
    flow, else the default in ``media_enrichment.config.Settings``; the summary's ``settings``
    shows what the run used. ``wait_for_batch=False`` submits and records the batch jobs and
    returns; the next run of the same work follows them. ``collect_only=True`` (``media-enrich
    collect``) follows recorded jobs and submits none.
    """
    # Checked before anything is read or called: a bad value names its parameter or variable.
    settings = build_settings(
        {
            "dataset": dataset, "provider": provider, "chunk_size": chunk_size, "concurrency": concurrency,
            "embedding_dim": embedding_dim, "limit": limit, "force": force, "batch": batch,
            "retry_failures": retry_failures, "task_runner": task_runner, "allowed_roots": allowed_roots,
            "max_images": max_images, "max_cost_usd": max_cost_usd, "invocation": invocation,
        }
    )
    logger = get_run_logger()
    inputs = prefect_inputs(settings)
    with open_run(
        settings, source, str(flow_run.get_id() or uuid.uuid4()), session=inputs.session, limiters=inputs.limiters,
        run_name=flow_run.get_name(),
    ) as run:
        catalog = load_catalog_rows(run)
        plan = plan_enrichment(run, catalog)
        logger.info(
            "Catalogue %s: %d images, %d already enriched, %d to enrich, %d unreadable, %d failed before and left alone",
            source, plan.total, plan.reused, len(plan.items), len(plan.failures), len(plan.given_up),
        )
        tracker = RunProgress(total=len(plan.items), dataset=settings.dataset)
        run.check_access(plan)  # before the catalogue is attempted: no image could succeed without it
        batch_items = run.batch_items(plan)
        batch_future = None
        if batch_items:  # submitted first: the jobs run while the on-demand chunks do
            logger.info("%d images go to Bedrock batch inference (invocation %s)", len(batch_items), settings.invocation)
            batch_future = batch_inference.submit(
                quote(batch_items), job=run.job, source=source, wait=wait_for_batch, submit=not collect_only,
                progress=quote(BatchJobsProgress(dataset=settings.dataset, bar_total=len(plan.items))),
            )
        staged, chunk_runner = _enrich_chunks(run.chunks(plan), job=run.job, budget=run.budget, tracker=tracker)
        batch = batch_future.result() if batch_future is not None else BatchOutcome()
        tracker.advance(batch.images - batch.waiting)
        staged = [*staged, *batch.staged]
        # quoted: Prefect need not walk a plan's items
        versions = merge_results(run, staged, quote(plan), quote(batch))
        summary = run.summary(plan, staged, versions, task_runner=chunk_runner, batch=batch)
        summary = summary.with_heatmap(publish_report(summary, dataset=run.dataset))
    logger.info("Enriched %d, reused %d, failed %d in %.1f s", summary.enriched, summary.reused, summary.failed, summary.duration_s)
    if summary.batch_jobs:
        logger.info(
            "Batch inference: %d jobs, %d images described by batch, %d finished on demand; cost $%s (on demand: $%s)",
            summary.batch_jobs, summary.batch_images, summary.batch_on_demand, summary.batch_cost_usd,
            summary.batch_on_demand_cost_usd,
        )
    if summary.stopped:
        logger.warning("Stopped early (%s): %d images left for the next run", summary.stopped, summary.deferred)
    return summary.as_dict()


def _enrich_chunks(
    chunks: list[list[WorkItem]], *, job: ChunkJob, budget: RunBudget, tracker: RunProgress
) -> tuple[list[StagedChunk], str]:
    """The chunk tasks on the flow's own threads, or on the task runner the settings ask for
    (chosen per run, by a parameter or the worker's environment, not when the flow is declared)."""
    if job.settings.task_runner == "threads":
        return _run_chunks(chunks, job=job, budget=budget, tracker=tracker), type(FlowRunContext.get().task_runner).__name__
    with task_runner_for(job.settings) as runner:
        return _run_chunks(chunks, job=job, budget=budget, tracker=tracker, runner=runner), type(runner).__name__
