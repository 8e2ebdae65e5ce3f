"""Committing a run: its staged chunks into the assets table, its failure rows into ``failures``.

A run of more than ``commit_rows`` rows commits in parts (a commit's size bounds the writer's
memory); each part's metadata carries the run's counts, ``part: i/n`` and ``part_enriched``
(the rows that commit wrote). Staged files are removed once their rows are committed (a chunk
with failure rows once those are recorded too), so a resumed run does not merge them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from media_enrichment.pipeline.plan import ModelVersions, Plan
from media_enrichment.pipeline.staging import (
    StagedChunk,
    commit_staged,
    failures_table,
    remove_staged,
    staged_failures,
    staged_image_ids,
)

if TYPE_CHECKING:
    from media_enrichment.dataset import Dataset


@dataclass(frozen=True)
class CommitVersions:
    """The table versions a run's commits made (None: that table was not written)."""

    assets_version: int | None = None
    failures_version: int | None = None


def group_staged(chunks: Sequence[StagedChunk], *, max_rows: int) -> list[list[StagedChunk]]:
    """Consecutive groups of staged chunks holding at most ``max_rows`` enriched rows each (a
    chunk larger than that is a group of its own); chunks without rows are left out."""
    groups: list[list[StagedChunk]] = []
    rows = 0
    for chunk in chunks:
        if not chunk.enriched:
            continue
        if not groups or rows + chunk.enriched > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(chunk)
        rows += chunk.enriched
    return groups


def commit_metadata(
    *,
    run_id: str,
    run_name: str | None,
    versions: ModelVersions,
    plan: Plan,
    source: str,
    staged: Sequence[StagedChunk],
) -> dict[str, Any]:
    """The metadata every commit of a run carries: who ran it, with which models and prompt,
    what it read, and the tokens it was billed.

    Args:
        run_id: the run's id (the flow run id under Prefect).
        run_name: the run's readable name (the flow run's), or None.
        versions: the run's models and prompt.
        plan: the run's plan (batch label, catalogue rows, reused rows).
        source: the catalogue.
        staged: the run's staged chunks (their tokens).

    Returns:
        The metadata (``enriched`` and ``failed`` are added by ``commit_run``).
    """
    return {
        "run_id": run_id,
        "flow_run_name": run_name,
        **versions.as_metadata(),
        "batch": plan.batch,
        "source": source,
        "catalog_rows": plan.total,
        "reused": plan.reused,
        "input_tokens": sum(c.input_tokens for c in staged),
        "output_tokens": sum(c.output_tokens for c in staged),
    }


def commit_run(
    dataset: Dataset,
    staged: Sequence[StagedChunk],
    *,
    plan_failures: Sequence[dict[str, Any]],
    metadata: dict[str, Any],
    commit_rows: int,
) -> CommitVersions:
    """Merge the staged chunks into the assets table (one commit per ``commit_rows`` rows) and
    record the failures (images that now succeeded leave the failures table).

    A staged file another run committed and removed meanwhile is left out: its rows are in.

    Args:
        dataset: the run's dataset.
        staged: the run's staged chunks (those it wrote or reused).
        plan_failures: failure rows of the plan (unreadable images).
        metadata: the run's commit metadata (``commit_metadata``).
        commit_rows: most rows per commit.

    Returns:
        The versions written.
    """
    options = dataset.storage_options
    failures = pa.concat_tables([staged_failures(staged, storage_options=options), failures_table(list(plan_failures))])
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
    return CommitVersions(assets_version=assets_version, failures_version=failures_version)
