"""What a run did, as one typed record: the flow's return value, the CLI's table, the UI's summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from media_enrichment.cost import run_cost
from media_enrichment.pipeline.commit import CommitVersions
from media_enrichment.pipeline.plan import ModelVersions, Plan
from media_enrichment.pipeline.staging import StagedChunk

if TYPE_CHECKING:
    from media_enrichment.pipeline.batch import BatchOutcome


@dataclass(frozen=True)
class RunSummary:
    """The outcome of one run.

    Attributes:
        run_id: the run's id (the flow run id under Prefect); on every row and commit.
        source: the catalogue.
        dataset: the dataset root.
        batch: the batch label stored on the rows.
        catalog_rows: images in the catalogue (after ``limit``).
        reused: images whose stored row was reused (same bytes, models, prompt, vector size).
        enriched: images enriched and committed by this run.
        failed: images that became failure rows (unreadable ones included).
        given_up: images left alone: they failed before with the same bytes, permanently or
            ``max_failure_attempts`` times.
        chunks: chunks the work was split into.
        task_runner: what ran the chunks (e.g. ``ThreadPoolTaskRunner``, ``DaskTaskRunner``).
        workers: ``host:pid`` of the processes that ran chunks.
        input_tokens, output_tokens: the describer's tokens billed for the enriched images.
        assets_version, failures_version: the table versions committed (None: not written).
        estimated_cost_usd: list-price cost of the tokens and images.
        rate_control: each rate gate's statistics (Bedrock).
        duration_s: seconds from the run's start to its summary.
        images_per_s: ``enriched / duration_s``.
        enrichment_model, embedding_model, prompt_version, embedding_dim: the run's versions.
        settings: the settings the run used, wherever each value came from.
        retries: the run's retry budget and its bounds (``RetryBudget.as_dict``).
        heatmap: the similarity heatmap's URI, once the report is published.
        stopped: why the run stopped before its plan's end (``max_images``, ``max_cost_usd``);
            None: it did not.
        deferred: images of the plan the run did not submit (the next run plans them again).
        invocation: how its rows' calls were made: ``on-demand``, ``batch`` or ``batch+on-demand``.
        batch_images: rows whose description came from a batch job.
        batch_jobs: batch jobs the run followed (submitted or picked up from a record).
        batch_on_demand: images of the batch work finished on demand (fallbacks, below the minimum).
        batch_cost_usd: what the batch part cost at batch prices; None without batch work (or
            without a batch price for a model).
        batch_on_demand_cost_usd: what the same batch work would have cost on demand.
    """

    run_id: str
    source: str
    dataset: str
    batch: str | None = None
    catalog_rows: int = 0
    reused: int = 0
    enriched: int = 0
    failed: int = 0
    given_up: int = 0
    chunks: int = 0
    task_runner: str | None = None
    workers: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    assets_version: int | None = None
    failures_version: int | None = None
    estimated_cost_usd: float | None = None
    rate_control: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    images_per_s: float | None = None
    enrichment_model: str | None = None
    embedding_model: str | None = None
    prompt_version: str | None = None
    embedding_dim: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    retries: dict[str, Any] = field(default_factory=dict)
    heatmap: str | None = None
    stopped: str | None = None
    deferred: int = 0
    invocation: str = "on-demand"
    batch_images: int = 0
    batch_jobs: int = 0
    batch_on_demand: int = 0
    batch_cost_usd: float | None = None
    batch_on_demand_cost_usd: float | None = None

    @classmethod
    def of_run(
        cls,
        *,
        run_id: str,
        source: str,
        dataset: str,
        plan: Plan,
        chunks: int,
        staged: Sequence[StagedChunk],
        commit: CommitVersions,
        versions: ModelVersions,
        prices: Mapping[str, Any],
        duration_s: float,
        task_runner: str | None = None,
        rate_control: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        retries: Mapping[str, Any] | None = None,
        stopped: str | None = None,
        deferred: int = 0,
        batch: BatchOutcome | None = None,
    ) -> RunSummary:
        """The summary of a finished run, its counts and cost computed from its parts.

        Args:
            run_id, source, dataset: the run's identity.
            plan: its plan.
            chunks: how many chunks the plan was split into.
            staged: its staged chunks (committed now).
            commit: the versions its commits wrote.
            versions: its models and prompt.
            prices: the price table (``load_prices``).
            duration_s: seconds since the run started.
            task_runner: what ran the chunks.
            rate_control: the rate gates' statistics.
            settings: the settings the run used (JSON-ready).
            retries: its retry budget (``RetryBudget.as_dict``).
            stopped: why it stopped early (None: it did not).
            deferred: images it left for the next run.
            batch: the batch step's outcome (its rows are priced at batch prices).

        Returns:
            The summary.
        """
        enriched = sum(c.enriched for c in staged)
        input_tokens = sum(c.input_tokens for c in staged)
        output_tokens = sum(c.output_tokens for c in staged)
        models = {"enrichment_model": versions.enrichment_model, "embedding_model": versions.embedding_model, "prices": prices}
        b_in, b_out, b_images = (batch.input_tokens, batch.output_tokens, batch.embedded) if batch else (0, 0, 0)
        on_demand_cost = run_cost(
            **models, input_tokens=input_tokens - b_in, output_tokens=output_tokens - b_out, images=enriched - b_images
        )
        batch_cost = batch_as_on_demand = None
        if batch is not None and batch.images:
            batch_cost = run_cost(**models, input_tokens=b_in, output_tokens=b_out, images=b_images, batch=True)
            batch_as_on_demand = run_cost(**models, input_tokens=b_in, output_tokens=b_out, images=b_images)
        total_cost = on_demand_cost
        if batch_cost is not None and on_demand_cost is not None:
            total_cost = on_demand_cost + batch_cost
        elif batch is not None and batch.images and (b_in or b_images):
            total_cost = None  # a model without a batch price: the run's cost is unknown
        from media_enrichment.pipeline.batch import record_summary

        return cls(
            run_id=run_id,
            source=source,
            dataset=dataset,
            batch=plan.batch,
            catalog_rows=plan.total,
            reused=plan.reused,
            enriched=enriched,
            failed=sum(c.failed for c in staged) + len(plan.failures),
            given_up=len(plan.given_up),
            chunks=chunks,
            task_runner=task_runner,
            workers=sorted({c.worker for c in staged if c.worker}),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            assets_version=commit.assets_version,
            failures_version=commit.failures_version,
            estimated_cost_usd=total_cost,
            rate_control=dict(rate_control or {}),
            duration_s=round(duration_s, 3),
            images_per_s=round(enriched / duration_s, 2) if duration_s > 0 else None,
            **versions.as_metadata(),
            settings=dict(settings or {}),
            retries=dict(retries or {}),
            stopped=stopped,
            deferred=deferred,
            invocation=record_summary(batch)["invocation"],
            batch_images=batch.described if batch else 0,
            batch_jobs=len(batch.jobs) if batch else 0,
            batch_on_demand=batch.on_demand if batch else 0,
            batch_cost_usd=batch_cost,
            batch_on_demand_cost_usd=batch_as_on_demand,
        )

    def with_heatmap(self, uri: str | None) -> RunSummary:
        """This summary with the heatmap's URI."""
        return replace(self, heatmap=uri)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (JSON-ready): the flow's return value."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """A summary from ``as_dict``'s output (e.g. a flow run's result); unknown keys are ignored."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
