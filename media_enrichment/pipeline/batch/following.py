"""Following a run's batch jobs to their end, and taking each finished job's results in.

``follow_jobs`` looks at every pending job each ``batch_poll_s`` (a look the control plane
throttles is skipped, not fatal), reports ``BatchProgress`` (``progress_of``), reads the results
of each job as it ends (``read_results``: parsed as on demand) into the images they are for, and
stages every chunk whose images have all their answers (``rows.stage_ready``). A record that came
back ``error``, ``invalid`` or ``missing``, and every record of a job that ended without results
(Failed, Expired), is left to the fallback (``BatchImage.leave``); an unusable description is kept
as the prior of its on-demand corrective turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from media_enrichment.batch.jobs import JobState, follow
from media_enrichment.batch.records import DESCRIBE, EMBED
from media_enrichment.batch.results import OK, RecordResult, read_results
from media_enrichment.batch.submitted import SubmittedJob
from media_enrichment.errors import RetryableProviderError
from media_enrichment.pipeline.batch.context import BatchContext, BatchImage, ByRecord, OpenChunks
from media_enrichment.pipeline.batch.outcome import BatchProgress, Stats
from media_enrichment.pipeline.batch.rows import stage_ready
from media_enrichment.pipeline.staging import StagedChunk
from media_enrichment.providers.base import Description

# The package's logger: log lines keep the name they had before the package was split.
logger = logging.getLogger(__package__)

__all__ = ["follow_jobs", "progress_of"]


def follow_jobs(
    ctx: BatchContext, jobs: dict[str, SubmittedJob], by_rid: ByRecord, open_chunks: OpenChunks,
    images: dict[str, BatchImage], staged: list[StagedChunk], stats: Stats,
    on_progress: Callable[[BatchProgress], None] | None,
) -> None:
    """Follow ``jobs`` until they all ended, staging (into ``staged``) every chunk as it is ready."""
    pending = dict(jobs)
    states: dict[str, JobState] = {}
    while pending:
        for arn, job in list(pending.items()):
            try:
                state = follow(ctx.bedrock, job)
            except RetryableProviderError as exc:
                logger.info("batch job %s: no state this time (%s)", job.job_id, exc)
                continue
            states[arn] = state
            if state.done:
                del pending[arn]
                _absorb(ctx, job, state, by_rid)
                logger.info(
                    "Batch job %s ended %s (%s of %s records processed)%s", job.job_id, state.status,
                    state.processed, state.total, f": {state.message}" if state.message else "",
                )
        if on_progress is not None:
            on_progress(progress_of(jobs, states))
        staged += stage_ready(ctx, open_chunks, images, stats)
        if pending:
            ctx.sleep(ctx.settings.batch_poll_s)


def _absorb(ctx: BatchContext, job: SubmittedJob, state: JobState, by_rid: ByRecord) -> None:
    """Take a finished job's results into the images they are for."""
    ours = [rid for rid, _, _ in job.records if rid in by_rid]
    if not state.readable:
        for rid in ours:
            image, kind = by_rid[rid]
            image.leave(kind, f"batch job {job.job_id} ended {state.status}: {state.message or 'no results'}",
                        code=f"Batch{state.status}")
        return
    results = read_results(ctx.s3, job, embedder=ctx.services.embedder if job.kind == EMBED else None)
    for rid in ours:
        image, kind = by_rid[rid]
        if kind not in image.needed:
            continue
        result = results.records[rid]
        if result.status == OK:
            if kind == DESCRIBE:
                assert result.metadata is not None
                image.description = Description(result.metadata, result.input_tokens, result.output_tokens)
            else:
                image.vector = result.vector
            image.from_batch.add(kind)
            image.needed.discard(kind)
        else:
            if kind == DESCRIBE and result.parsed is not None and result.parsed.metadata is None:
                # Its corrective turn is on demand, from this answer (not the first turn again).
                image.prior = (result.parsed, result.input_tokens, result.output_tokens)
            image.leave(kind, _why(result, job), code=f"Batch{result.status.capitalize()}")


def _why(result: RecordResult, job: SubmittedJob) -> str:
    detail = f"{result.error_code}: {result.error_message}" if result.error_code else result.status
    return f"batch job {job.job_id}: record {result.record_id} {result.status} ({detail})"


def progress_of(jobs: dict[str, SubmittedJob], states: dict[str, JobState]) -> BatchProgress:
    """The progress of ``jobs`` by their last states read (a job not read yet counts as Submitted)."""
    by_status: dict[str, int] = {}
    records = processed = done = 0
    for arn, job in jobs.items():
        state = states.get(arn)
        status = state.status if state else "Submitted"
        by_status[status] = by_status.get(status, 0) + 1
        total = len(job.records)
        records += total
        if state is not None and state.done:
            done += 1
            processed += total  # an ended job has done all it will: its records are settled
        elif state is not None and state.processed:
            processed += min(total, state.processed)
    return BatchProgress(jobs=len(jobs), done=done, records=records, processed=processed, states=by_status)
