"""What a run did, as one typed record: the flow's return value, the CLI's table, the UI's summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from media_enrichment.cost import run_cost
from media_enrichment.pipeline.commit import CommitVersions
from media_enrichment.pipeline.plan import ModelVersions, Plan
from media_enrichment.pipeline.staging import StagedChunk


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

        Returns:
            The summary.
        """
        enriched = sum(c.enriched for c in staged)
        input_tokens = sum(c.input_tokens for c in staged)
        output_tokens = sum(c.output_tokens for c in staged)
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
            estimated_cost_usd=run_cost(
                enrichment_model=versions.enrichment_model, embedding_model=versions.embedding_model,
                input_tokens=input_tokens, output_tokens=output_tokens, images=enriched, prices=prices,
            ),
            rate_control=dict(rate_control or {}),
            duration_s=round(duration_s, 3),
            images_per_s=round(enriched / duration_s, 2) if duration_s > 0 else None,
            **versions.as_metadata(),
            settings=dict(settings or {}),
            retries=dict(retries or {}),
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
