"""Tasks of the enrichment flow. Each wraps one library call; the flow wires them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from media_enrichment.catalog import Catalog, load_catalog
from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import CatalogError, ConfigError, DatasetLocationError, FatalProviderError
from media_enrichment.pipeline import (
    ModelVersions,
    Plan,
    Reader,
    StagedChunk,
    WorkItem,
    chunk_key,
    commit_staged,
    failures_table,
    find_staged,
    group_staged,
    plan_work,
    remove_staged,
    stage_chunk,
    staged_failures,
    staged_image_ids,
)
from media_enrichment_prefect.tasks.chunk_job import ChunkJob, services_for, worker_name


#: Errors no retry can fix: access to the models or the catalogue, settings, a dataset
#: location that cannot be written (a file, no permission, no bucket, access denied).
_FATAL = (
    FatalProviderError, ConfigError, CatalogError, DatasetLocationError,
    NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError,
)


def _retry_unless_fatal(task, task_run, state) -> bool:
    """Prefect retry condition: retry anything but errors no retry can fix."""
    try:
        state.result()
    except _FATAL:
        return False
    except Exception:
        return True
    return False


@task(name="load-catalog", cache_policy=NO_CACHE)
def load_catalog_rows(source: str, *, limit: int | None, batch: str | None = None, s3_client: Any = None) -> Catalog:
    """Read and validate the catalogue (manifest, folder or S3 prefix)."""
    return load_catalog(source, s3_client=s3_client, limit=limit, batch=batch)


@task(name="plan-enrichment", cache_policy=NO_CACHE)
def plan_enrichment(
    catalog: Catalog,
    *,
    dataset: Dataset,
    versions: ModelVersions,
    read: Reader,
    run_id: str,
    settings: Settings,
    default_batch: str | None = None,
) -> Plan:
    """Check the dataset can be written, hash the catalogue's images, skip those already enriched."""
    dataset.check_writable()  # before any image is read or any model called
    return plan_work(
        catalog,
        stored=dataset.fingerprints(),
        failures=None if settings.retry_failures else dataset.read_failures(),
        max_attempts=settings.max_failure_attempts,
        versions=versions,
        read=read,
        run_id=run_id,
        force=settings.force,
        default_batch=default_batch,
    )


@task(
    name="enrich-chunk",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_unless_fatal,
)
def enrich_chunk(items: list[WorkItem], *, job: ChunkJob) -> StagedChunk:
    """Describe and embed one chunk of images and stage the results to Parquet.

    Runs in the flow's process or in a Dask worker: the run's clients come from
    ``services_for(job)``, built once per process.
    """
    services = services_for(job)
    enricher, options = services.enricher, services.storage_options
    key = chunk_key(items, enricher.versions)
    # Staged already by an earlier attempt, a run that died, or a run going on now: no model call.
    staged = find_staged(staging_dir=job.staging_dir, key=key, storage_options=options)
    if staged is None:
        staged = stage_chunk(
            enricher.enrich(items), staging_dir=job.staging_dir, key=key, run_id=job.run_id, storage_options=options
        )
    return dataclasses.replace(staged, worker=worker_name())


@task(name="merge-results", cache_policy=NO_CACHE)
def merge_results(
    staged: list[StagedChunk],
    *,
    dataset: Dataset,
    plan_failures: list[dict[str, Any]],
    metadata: dict[str, Any],
    commit_rows: int,
) -> dict[str, int | None]:
    """Merge the staged chunks into the assets table (one commit per commit_rows rows); record failures."""
    options = dataset.storage_options
    # A staged file another run committed and removed meanwhile is left out: its rows are in.
    failures = pa.concat_tables([staged_failures(staged, storage_options=options), failures_table(plan_failures)])
    enriched_ids = staged_image_ids(staged, storage_options=options)
    counts = {**metadata, "enriched": len(enriched_ids), "failed": failures.num_rows}
    groups = group_staged(staged, max_rows=commit_rows)
    assets_version = None
    for part, group in enumerate(groups, start=1):
        # A part carries the run's counts and its own ("part_enriched": the rows this commit wrote).
        part_metadata = (
            {**counts, "part": f"{part}/{len(groups)}", "part_enriched": sum(c.enriched for c in group)}
            if len(groups) > 1 else counts
        )
        version = commit_staged(dataset, group, metadata=part_metadata)
        assets_version = assets_version if version is None else version
        # Committed: a resumed run does not merge them again. Chunks with failure rows stay
        # until those are recorded too.
        remove_staged([c for c in group if not c.failed], storage_options=options)
    failures_version = dataset.record_failures(failures, resolved_ids=enriched_ids, metadata=counts)
    remove_staged(staged, storage_options=options)  # only this run's chunks: those it wrote or committed
    return {"assets_version": assets_version, "failures_version": failures_version}
