"""What a run's batch part reports: ``BatchProgress`` while its jobs run, ``BatchOutcome`` when it
returns (counted in ``Stats`` as its rows are made), and ``record_summary``, the commit metadata
saying which way made a run's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from media_enrichment.pipeline.staging import StagedChunk

__all__ = ["BatchOutcome", "BatchProgress", "Stats", "record_summary"]


@dataclass(frozen=True)
class BatchProgress:
    """How far a run's batch jobs are.

    Attributes:
        jobs: jobs followed; done: those that ended.
        records: records of those jobs; processed: records they processed so far.
        states: jobs per status.
    """

    jobs: int
    done: int
    records: int
    processed: int
    states: dict[str, int]

    @property
    def percent(self) -> float:
        return 100.0 if not self.records else 100.0 * min(self.processed, self.records) / self.records


@dataclass(frozen=True)
class BatchOutcome:
    """What the batch part of a run did (picklable: it goes from a task to the commit and summary).

    Attributes:
        staged: the staged chunks of the batch items (their rows and failure rows).
        images: items given to the batch path.
        jobs: job ids followed (submitted by this run or picked up from a record).
        submitted: jobs this run created (a repeated token answering an existing job counts too).
        resumed: jobs picked up from a record in the staging area.
        described, embedded: rows whose description / vector came from a batch job.
        input_tokens, output_tokens: the tokens of those descriptions.
        on_demand: rows or failure rows finished on demand (fallback, or below the minimum).
        waiting: items whose jobs were left running (``wait=False``): nothing staged for them.
        record_files: the ``BatchRun`` records used; removed once the rows are committed.
    """

    staged: tuple[StagedChunk, ...] = ()
    images: int = 0
    jobs: tuple[str, ...] = ()
    submitted: int = 0
    resumed: int = 0
    described: int = 0
    embedded: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    on_demand: int = 0
    waiting: int = 0
    record_files: tuple[str, ...] = ()


@dataclass
class Stats:
    """The counts of a ``BatchOutcome`` added up as its rows are made (the fields of the same names)."""

    described: int = 0
    embedded: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    on_demand: int = 0


def record_summary(outcome: BatchOutcome | None) -> dict[str, Any]:
    """The commit metadata of a run's invocation: which way made its rows."""
    if outcome is None or not outcome.images:
        return {"invocation": "on-demand"}
    made_by_batch = outcome.described or outcome.embedded
    return {
        "invocation": "batch" if made_by_batch and not outcome.on_demand else ("batch+on-demand" if made_by_batch else "on-demand"),
        "batch_images": outcome.described,
        "batch_jobs": list(outcome.jobs),
    }
