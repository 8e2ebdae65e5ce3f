"""Tasks of the enrichment flow: each one call of the run's driver (``media_enrichment.pipeline.driver``)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from media_enrichment.catalog import Catalog
from media_enrichment.config import Settings
from media_enrichment.pipeline.commit import CommitVersions
from media_enrichment.pipeline.batch import BatchOutcome
from media_enrichment.pipeline.driver import ChunkJob, RunDriver, run_batch, run_chunk
from media_enrichment.pipeline.plan import Plan, WorkItem
from media_enrichment.pipeline.retries import TASK_RETRIES, TASK_RETRY_DELAYS_S, TASK_RETRY_JITTER, retried_by_task
from media_enrichment.pipeline.services import ServiceInputs
from media_enrichment.pipeline.staging import StagedChunk
from media_enrichment_prefect.tasks.aws import aws_session_from_block
from media_enrichment_prefect.tasks.limits import ensure_rate_limits
from media_enrichment_prefect.tasks.reporting import BatchJobsProgress


def prefect_inputs(settings: Settings) -> ServiceInputs:
    """What Prefect holds for a run's services: an AwsCredentials block's session and the shared
    rate limits (Prefect global concurrency limits), each when the settings ask for it."""
    block = settings.aws_credentials_block
    session = aws_session_from_block(block, region=settings.aws_region) if block else None
    shared = settings.provider == "bedrock" and settings.shared_rate_limits
    return ServiceInputs(session=session, limiters=ensure_rate_limits(settings) if shared else None)


def _retry_condition(task, task_run, state) -> bool:
    """Prefect retry condition: infrastructure errors only (``retried_by_task``)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the condition classifies whatever the task raised
        return retried_by_task(exc)
    return False


@task(name="load-catalog", cache_policy=NO_CACHE)
def load_catalog_rows(run: RunDriver) -> Catalog:
    """Read and validate the catalogue (manifest, folder or S3 prefix)."""
    return run.load_catalog()


@task(name="plan-enrichment", cache_policy=NO_CACHE)
def plan_enrichment(run: RunDriver, catalog: Catalog) -> Plan:
    """Check the dataset can be written, then plan: skip the images already enriched (their bytes hashed)."""
    return run.plan(catalog)


@task(
    name="enrich-chunk",
    cache_policy=NO_CACHE,
    retries=TASK_RETRIES,
    retry_delay_seconds=list(TASK_RETRY_DELAYS_S),
    retry_jitter_factor=TASK_RETRY_JITTER,
    retry_condition_fn=_retry_condition,
)
def enrich_chunk(items: list[WorkItem], *, job: ChunkJob) -> StagedChunk:
    """Describe and embed one chunk of images and stage the results to Parquet."""
    return run_chunk(job, items, inputs=prefect_inputs)


@task(
    name="batch-inference",
    cache_policy=NO_CACHE,
    retries=TASK_RETRIES,
    retry_delay_seconds=list(TASK_RETRY_DELAYS_S),
    retry_jitter_factor=TASK_RETRY_JITTER,
    retry_condition_fn=_retry_condition,
)
def batch_inference(
    items: list[WorkItem], *, job: ChunkJob, source: str, wait: bool = True, submit: bool = True,
    progress: BatchJobsProgress | None = None,
) -> BatchOutcome:
    """Enrich the plan's batch work through Bedrock batch jobs (recorded, followed, staged as chunks)."""
    return run_batch(job, items, inputs=prefect_inputs, wait=wait, submit=submit, source=source, on_progress=progress)


@task(name="merge-results", cache_policy=NO_CACHE)
def merge_results(
    run: RunDriver, staged: list[StagedChunk], plan: Plan, batch: BatchOutcome | None = None
) -> CommitVersions:
    """Merge the staged chunks into the assets table (one commit per commit_rows rows); record failures."""
    return run.commit(staged, plan, batch=batch)
