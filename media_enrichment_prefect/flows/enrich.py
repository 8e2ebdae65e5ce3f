"""The enrichment flow: the run driver's steps as Prefect tasks, in order (catalogue -> plan -> chunk tasks -> merge -> report)."""

from __future__ import annotations

import math
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from media_enrichment.config import ProviderName, Settings, TaskRunnerName, build_settings
from media_enrichment.pipeline.driver import ChunkJob, open_run
from media_enrichment.pipeline.plan import WorkItem
from media_enrichment.pipeline.staging import StagedChunk
from media_enrichment_prefect.tasks.enrichment import (
    enrich_chunk,
    load_catalog_rows,
    merge_results,
    plan_enrichment,
    prefect_inputs,
)
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
    # Checked before anything is read or called: a bad value names its parameter or variable.
    settings = build_settings(
        {
            "dataset": dataset, "provider": provider, "chunk_size": chunk_size, "concurrency": concurrency,
            "embedding_dim": embedding_dim, "limit": limit, "force": force, "batch": batch,
            "retry_failures": retry_failures, "task_runner": task_runner,
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
        staged, chunk_runner = _enrich_chunks(run.chunks(plan), job=run.job, tracker=tracker)
        versions = merge_results(run, staged, quote(plan))  # quoted: Prefect need not walk a plan's items
        summary = run.summary(plan, staged, versions, task_runner=chunk_runner)
        summary = summary.with_heatmap(publish_report(summary, dataset=run.dataset))
    logger.info("Enriched %d, reused %d, failed %d in %.1f s", summary.enriched, summary.reused, summary.failed, summary.duration_s)
    return summary.as_dict()


def _enrich_chunks(
    chunks: list[list[WorkItem]], *, job: ChunkJob, tracker: RunProgress
) -> tuple[list[StagedChunk], str]:
    """The chunk tasks on the flow's own threads, or on the task runner the settings ask for
    (chosen per run, by a parameter or the worker's environment, not when the flow is declared)."""
    if job.settings.task_runner == "threads":
        return _run_chunks(chunks, job=job, tracker=tracker), type(FlowRunContext.get().task_runner).__name__
    with task_runner_for(job.settings) as runner:
        return _run_chunks(chunks, job=job, tracker=tracker, runner=runner), type(runner).__name__
