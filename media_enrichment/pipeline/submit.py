"""Submitting a run's chunks: at most ``window`` in flight, and only while its budget admits them.

The orchestrator supplies how a chunk is submitted and how the next finished one is awaited
(Prefect task futures in the flow, ``concurrent.futures`` in the benchmarks); the order, the
window and the budget are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from media_enrichment.pipeline.budget import RunBudget
from media_enrichment.pipeline.plan import WorkItem
from media_enrichment.pipeline.staging import StagedChunk

__all__ = ["run_windowed"]

F = TypeVar("F")


def run_windowed(
    chunks: Sequence[list[WorkItem]],
    *,
    submit: Callable[[list[WorkItem]], F],
    next_done: Callable[[Collection[F]], F],
    result: Callable[[F], StagedChunk],
    window: int,
    budget: RunBudget | None = None,
    on_done: Callable[[StagedChunk, int], None] | None = None,
) -> list[StagedChunk]:
    """Submit the chunks in order, at most ``window`` at once; return their staged results.

    Args:
        chunks: the plan's chunks.
        submit: starts one chunk, returns its future.
        next_done: waits for one of the futures given to finish and returns it.
        result: the staged chunk of a finished future (raises the chunk's error).
        window: chunks in flight at most.
        budget: the run's budget: a chunk is submitted only when it admits it; those never
            submitted are counted in ``budget.deferred``.
        on_done: called with each staged chunk and its number of images (progress).

    Returns:
        The staged chunks, in the order they finished.
    """
    staged: list[StagedChunk] = []
    in_flight: dict[F, int] = {}
    position = 0

    def fill() -> None:
        nonlocal position
        while position < len(chunks) and len(in_flight) < window:
            items = chunks[position]
            if budget is not None and not budget.admit(len(items)):
                return
            in_flight[submit(items)] = len(items)
            position += 1

    fill()
    while in_flight:
        future = next_done(list(in_flight))
        size = in_flight.pop(future)
        done = result(future)  # raises after the task's retries are spent
        staged.append(done)
        if budget is not None:
            budget.record(done, images=size)
        if on_done is not None:
            on_done(done, size)
        fill()
    if budget is not None:
        budget.close(chunks[position:])
    return staged
