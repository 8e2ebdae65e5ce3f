"""What a run does, in order, without orchestration: the driver an orchestrator calls step by step.

    run = open_run(settings, source, run_id)     # services built once, dataset opened, prices read
    catalog = run.load_catalog()
    plan = run.plan(catalog)                      # dataset checked writable first; hash, skip done
    run.check_access(plan)                        # one tiny call per model before any image
    staged = [run.run_chunk(items) for items in run.chunks(plan)]   # or chunk tasks, in parallel
    batch = run.run_batch(run.batch_items(plan))  # invocation batch/auto: Bedrock batch jobs
    versions = run.commit([*staged, *batch.staged], plan, batch=batch)
    summary = run.summary(plan, [*staged, *batch.staged], versions, batch=batch)
    run.close()

``chunks`` holds the plan's on-demand work and ``batch_items`` its batch work (``invocation``:
``auto`` sends a model's records to batch when they reach ``batch_min_records``). The batch step
(``pipeline/batch/``) stages chunks of rows as chunk tasks do, so commit, failures and the
summary are the same code whichever way the calls were made.

Chunks may run elsewhere: a chunk task receives the run's ``ChunkJob`` and calls
``run_chunk(job, items)`` (``pipeline/chunks.py``, re-exported here), which builds the run's
services once per process; in the process that opened the run they are the run's own.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from media_enrichment.catalog import Catalog, load_catalog, roots_for
from media_enrichment.config import Settings
from media_enrichment.cost import load_prices, run_cost
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline.batch import BatchOutcome, BatchProgress, batchable_kinds, record_summary, remove_records
from media_enrichment.pipeline.budget import RunBudget
from media_enrichment.pipeline.chunks import (
    ChunkJob,
    InputsFactory,
    keep_services,
    release_services,
    run_batch,
    run_chunk,
    services_for,
    worker_name,
)
from media_enrichment.pipeline.commit import CommitVersions, commit_metadata, commit_run
from media_enrichment.pipeline.plan import ModelVersions, Plan, WorkItem, plan_work, split_chunks
from media_enrichment.pipeline.services import RunServices, ServiceInputs, build_services, open_dataset
from media_enrichment.pipeline.staging import StagedChunk
from media_enrichment.pipeline.summary import RunSummary

__all__ = [
    "ChunkJob", "InputsFactory", "RunDriver", "open_run", "release_services", "run_batch", "run_chunk",
    "services_for", "worker_name",
]

logger = logging.getLogger(__name__)

class RunDriver:
    """One run of the pipeline, step by step (see the module docstring); use ``open_run``."""

    def __init__(
        self, *, settings: Settings, source: str, job: ChunkJob, services: RunServices, dataset: Dataset,
        prices: Mapping[str, Any], run_name: str | None, started: float,
    ):
        self.settings = settings
        self.source = source
        self.job = job
        self.services = services
        self.dataset = dataset
        self.prices = prices
        self.run_name = run_name
        self.started = started
        versions = services.versions
        self.budget = RunBudget(
            max_cost_usd=settings.max_cost_usd,
            cost_of=lambda tokens_in, tokens_out, images: run_cost(
                enrichment_model=versions.enrichment_model, embedding_model=versions.embedding_model,
                input_tokens=tokens_in, output_tokens=tokens_out, images=images, prices=prices,
            ),
            prior_output_tokens=settings.max_output_tokens,
        )

    @property
    def run_id(self) -> str:
        return self.job.run_id

    @property
    def versions(self) -> ModelVersions:
        """The models and prompt of this run's rows."""
        assert self.job.versions is not None
        return self.job.versions

    def load_catalog(self) -> Catalog:
        """Read and validate the catalogue (``limit`` and ``batch`` applied).

        Raises:
            CatalogError: the catalogue is missing, empty, malformed or refused.
        """
        return load_catalog(self.source, s3_client=self.services.s3, limit=self.settings.limit, batch=self.settings.batch)

    @property
    def may_batch(self) -> bool:
        """Whether some of this run's images may go to batch inference jobs (``invocations``)."""
        return self.settings.invocation != "on-demand" and self.settings.provider != "local"

    def plan(self, catalog: Catalog) -> Plan:
        """Check the dataset can be written, then keep the catalogue's images whose stored row
        cannot be reused (hashing those the dataset holds a row or a spent failure of; every
        image when the run may use batch jobs, whose record ids name the content hash).

        Raises:
            DatasetLocationError: the dataset cannot be written there (before any image is read).
            CatalogAccessError: the catalogue's storage refused a read.
        """
        self.dataset.check_writable()  # before any image is read or any model called
        settings = self.settings
        return plan_work(
            catalog,
            stored=self.dataset.fingerprints(),
            failures=None if settings.retry_failures else self.dataset.read_failures(),
            max_attempts=settings.max_failure_attempts,
            versions=self.versions,
            read=self.services.read,
            run_id=self.run_id,
            force=settings.force,
            default_batch=settings.batch or catalog.default_batch,
            hash_new=self.may_batch,
        )

    def check_access(self, plan: Plan) -> None:
        """One tiny call per model, so that a run no image could succeed in stops before the
        catalogue is attempted (nothing is sent when the plan has nothing to enrich).

        Raises:
            FatalProviderError: access denied, unknown or retired model, refused parameters.
        """
        if plan.items:
            self.services.describer.check_access()
            self.services.embedder.check_access()

    def invocations(self, plan: Plan) -> tuple[list[WorkItem], list[WorkItem]]:
        """The plan's work (its first ``max_images``) split by invocation: ``(batch, on_demand)``.

        ``on-demand``: everything on demand. ``batch``: everything to the batch step (which
        calls on demand what is too little for a job). ``auto``: batch when the run has at least
        ``batch_min_records`` records for a model a job can call (one record per image and
        model), else on demand; on the local provider always on demand.
        """
        items = plan.items[: self.settings.max_images]
        settings = self.settings
        mode = settings.invocation
        if not self.may_batch:
            return [], list(items)
        if mode == "auto":
            if len(items) < settings.batch_min_records or not batchable_kinds(self.services):
                return [], list(items)
            if not settings.batch_role_arn or settings.batch_location_uri is None:
                logger.warning(
                    "invocation auto: %d images would go to batch inference, but it is not set up (%s): on demand",
                    len(items), "MEDIA_ENRICH_BATCH_ROLE_ARN" if not settings.batch_role_arn else "MEDIA_ENRICH_BATCH_S3_URI",
                )
                return [], list(items)
        return list(items), []

    def chunks(self, plan: Plan) -> list[list[WorkItem]]:
        """The plan's on-demand work in chunks of ``chunk_size`` images (its first ``max_images`` only)."""
        return split_chunks(self.invocations(plan)[1], self.settings.chunk_size)

    def batch_items(self, plan: Plan) -> list[WorkItem]:
        """The plan's work for batch inference jobs (``run_batch``); empty on demand."""
        return self.invocations(plan)[0]

    def run_batch(
        self, items: Sequence[WorkItem], *, wait: bool = True, on_progress: Callable[[BatchProgress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep, submit: bool = True,
    ) -> BatchOutcome:
        """Enrich the batch items through batch jobs in this process (``run_batch`` with this run's job)."""
        return run_batch(
            self.job, items, wait=wait, on_progress=on_progress, sleep=sleep, source=self.source, submit=submit
        )

    def stopped(self, plan: Plan) -> tuple[str | None, int]:
        """Why the run did not enrich its whole plan, and how many images it left for the next run."""
        cap = self.settings.max_images
        cut = max(0, len(plan.items) - cap) if cap is not None else 0
        deferred = cut + self.budget.deferred
        if self.budget.stopped is not None:
            return self.budget.stopped, deferred
        if cut:
            return f"max_images: {cap} of the {len(plan.items)} images to enrich", deferred
        return None, deferred

    def run_chunk(self, items: Sequence[WorkItem]) -> StagedChunk:
        """Enrich and stage one chunk in this process (``run_chunk`` with this run's job)."""
        return run_chunk(self.job, items)

    def commit(self, staged: Sequence[StagedChunk], plan: Plan, *, batch: BatchOutcome | None = None) -> CommitVersions:
        """Commit the staged chunks (in parts of ``commit_rows`` rows) and the failure rows.

        Args:
            staged: every staged chunk of the run (on demand and batch).
            plan: the run's plan.
            batch: the batch step's outcome: the metadata says which invocation made the rows
                (``invocation``, ``batch_images``, ``batch_jobs``), and the records of its jobs
                are removed from the staging area once their rows are committed.

        Returns:
            The versions written (both None when there was nothing to write).
        """
        if not staged and not plan.failures:
            return CommitVersions()
        metadata = {
            **commit_metadata(
                run_id=self.run_id, run_name=self.run_name, versions=self.versions, plan=plan, source=self.source,
                staged=staged,
            ),
            **record_summary(batch),
        }
        versions = commit_run(
            self.dataset, staged, plan_failures=plan.failures, metadata=metadata, commit_rows=self.settings.commit_rows
        )
        if batch is not None and not batch.waiting:
            remove_records(batch.record_files, storage_options=self.services.storage_options)
        return versions

    def summary(
        self, plan: Plan, staged: Sequence[StagedChunk], commit: CommitVersions, *, task_runner: str | None = None,
        batch: BatchOutcome | None = None,
    ) -> RunSummary:
        """The run's summary: counts, tokens, cost (batch beside on demand), versions, rate
        control, retry budget, settings, and why it stopped early if it did."""
        stopped, deferred = self.stopped(plan)
        if batch is not None and batch.waiting:
            deferred += batch.waiting
            stopped = stopped or (
                f"batch: {batch.waiting} images wait for batch jobs (a later run, or media-enrich collect, finishes them)"
            )
        return RunSummary.of_run(
            run_id=self.run_id, source=self.source, dataset=self.settings.dataset, plan=plan,
            chunks=len(self.chunks(plan)) + (len(batch.staged) if batch else 0), staged=staged, commit=commit,
            versions=self.versions, prices=self.prices,
            duration_s=time.perf_counter() - self.started, task_runner=task_runner,
            rate_control=self.services.rate_control(), settings=self.settings.model_dump(mode="json"),
            retries=self.services.retries.as_dict(), stopped=stopped, deferred=deferred, batch=batch,
        )

    def close(self) -> None:
        """Forget the run's services in this process."""
        release_services(self.job)

    def __enter__(self) -> RunDriver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_run(
    settings: Settings,
    source: str,
    run_id: str,
    *,
    session: Any = None,
    limiters: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> RunDriver:
    """Open a run: read the price table, build its services once, open its dataset.

    Args:
        settings: the run's settings (already resolved: given values, environment, defaults).
        source: the catalogue (manifest, folder or ``s3://`` prefix).
        run_id: the run's id, on every row and commit.
        session: a boto3 session for the run's AWS clients and writers (the orchestrator's
            credentials); None: boto3's standard chain.
        limiters: rate limiters shared across runs and workers (see ``ServiceInputs``).
        run_name: a readable name for the commits' metadata (``flow_run_name``).

    Returns:
        The run's driver; close it (or use it as a context manager) when the run ends.

    Raises:
        ConfigError: a bad price file, profile, model id or prompt file: before any model call.
    """
    started = time.perf_counter()
    prices = load_prices(settings.price_file)  # a bad price file stops the run before it pays
    job = ChunkJob(
        settings=settings, run_id=run_id, versions=None, staging_dir=Dataset(settings.dataset).staging_dir,
        reads_s3=source.startswith("s3://") or any(r.startswith("s3://") for r in settings.allowed_roots),
        roots=roots_for(source, settings.allowed_roots),
    )
    services = build_services(
        settings, run_id=run_id, staging_dir=job.staging_dir, reads_s3=job.reads_s3, roots=job.roots,
        inputs=ServiceInputs(session=session, limiters=limiters),
    )
    keep_services(job.key, services)  # the chunks this process runs share these
    job = dataclasses.replace(job, versions=services.versions)
    return RunDriver(
        settings=settings, source=source, job=job, services=services, dataset=open_dataset(settings, services),
        prices=prices, run_name=run_name, started=started,
    )
