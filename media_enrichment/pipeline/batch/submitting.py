"""Writing a run's records into batch jobs, a bounded group at a time.

``submit_records`` builds the records no recorded job holds from the same request bodies as on
demand (each image read and prepared once, for both models), holding at most one job's quota of
records (``batch_max_records_per_job``, ``batch_max_bytes_per_job``) at once: each group is split
into jobs (``split_jobs``), submitted, and the run's ``BatchRun`` rewritten before the next group
is built, and before any waiting. A kind with fewer records than ``batch_min_records`` gets no
job, and a job the service refuses as too small neither: those calls are made on demand. A
throttled create is retried with the same token (the same job); a token that answers a job of an
earlier run that ended without results (Failed, Expired) is followed by another attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import random

from media_enrichment.batch.errors import BatchTooSmallError
from media_enrichment.batch.jobs import follow, submit_job
from media_enrichment.batch.records import DESCRIBE, EMBED, BatchRecord, JobSpec, describe_record, embed_record, split_jobs
from media_enrichment.batch.submitted import BatchRun, SubmittedJob
from media_enrichment.errors import RetryableProviderError
from media_enrichment.pipeline.batch.context import BatchContext, BatchImage, ByRecord
from media_enrichment.pipeline.batch.recorded import write_record

# The package's logger: log lines keep the name they had before the package was split.
logger = logging.getLogger(__package__)

__all__ = ["submit_records"]

#: Submissions of the same records after jobs of theirs ended without results, in one run.
_RESUBMITS = 2


def submit_records(
    ctx: BatchContext, images: dict[str, BatchImage], by_rid: ByRecord, covered: set[str], run: BatchRun,
    record_path: str,
) -> int:
    """Build, split and submit the records not covered by a recorded job; returns jobs submitted.

    Each job is added to ``run``, which is written to ``record_path`` as soon as it is submitted.
    """
    wanted: dict[str, list[str]] = {kind: [] for kind in ctx.kinds}
    for rid, (image, kind) in by_rid.items():
        if rid in covered:
            continue
        wanted[kind].append(rid)
    for kind, rids in wanted.items():
        if len(rids) < ctx.quotas.min_records:
            # Too few for a job: on demand, without reading any image for a record.
            for rid in rids:
                image, _ = by_rid[rid]
                _below_minimum(ctx, image, kind)
            wanted[kind] = []
    todo = sorted({by_rid[rid][0].item.image_id for rids in wanted.values() for rid in rids})
    if not todo:
        return 0
    submitted = 0
    group: list[BatchRecord] = []
    counts = dict.fromkeys(ctx.kinds, 0)
    sizes = dict.fromkeys(ctx.kinds, 0)
    wanted_ids = {rid for rids in wanted.values() for rid in rids}
    for image_id in todo:
        image = images[image_id]
        records = _records(ctx, image, wanted_ids)
        if not records:
            continue
        full = any(
            counts[r.kind] + 1 > ctx.quotas.max_records_per_job or sizes[r.kind] + r.size > ctx.quotas.max_bytes_per_job
            for r in records
        )
        if full and group:
            submitted += _submit_group(ctx, group, by_rid, run, record_path)
            group, counts, sizes = [], dict.fromkeys(ctx.kinds, 0), dict.fromkeys(ctx.kinds, 0)
        for r in records:
            group.append(r)
            counts[r.kind] += 1
            sizes[r.kind] += r.size
    if group:
        submitted += _submit_group(ctx, group, by_rid, run, record_path)
    return submitted


def _below_minimum(ctx: BatchContext, image: BatchImage, kind: str) -> None:
    image.leave(kind, f"fewer {kind} records than a job's minimum ({ctx.quotas.min_records})", always=True)


def _records(ctx: BatchContext, image: BatchImage, wanted: set[str]) -> list[BatchRecord]:
    """The image's records still to submit (it is read and prepared once, for both models);
    a read or prepare error becomes its failure row, as on demand."""
    item = image.item
    prepared = ctx.read_image(image, lambda data: ctx.prepare(data, item))
    if prepared is None:
        image.needed.clear()
        return []
    facts, (for_describer, for_embedder) = prepared
    image.facts = facts
    out = []
    if DESCRIBE in ctx.kinds:
        record = describe_record(ctx.services.describer, item.image_id, item.content_sha256, for_describer)
        if record.record_id in wanted:
            out.append(record)
    if EMBED in ctx.kinds:
        record = embed_record(ctx.services.embedder, item.image_id, item.content_sha256, for_embedder)
        if record.record_id in wanted:
            out.append(record)
    return out


def _submit_group(ctx: BatchContext, group: list[BatchRecord], by_rid: ByRecord, run: BatchRun, record_path: str) -> int:
    split = split_jobs(group, quotas=ctx.quotas)
    for record in split.below_minimum:
        image, kind = by_rid[record.record_id]
        _below_minimum(ctx, image, kind)
    submitted = 0
    for spec in split.jobs:
        try:
            job = _submit_one(ctx, spec)
        except BatchTooSmallError as exc:  # the model's quota is higher than the setting
            logger.warning("%s: its records go on demand (raise MEDIA_ENRICH_BATCH_MIN_RECORDS to match)", exc)
            for record in spec.records:
                image, kind = by_rid[record.record_id]
                image.leave(kind, str(exc), always=True)
            continue
        run.add(job)
        submitted += 1
        # Recorded before anything waits: a run that dies now leaves the job to the next one.
        write_record(record_path, run, storage_options=ctx.options)
        logger.info("Submitted batch job %s (%s, %d records)", job.job_id, spec.model_id, spec.record_count)
    return submitted


def _submit_one(ctx: BatchContext, spec: JobSpec) -> SubmittedJob:
    """Submit a job; when its token answers a job of an earlier run that ended without results
    (Failed, Expired), submit the records again as the next attempt (another name and token),
    at most ``_RESUBMITS`` times."""
    job = _create(ctx, spec)
    for _ in range(_RESUBMITS):
        try:
            state = follow(ctx.bedrock, job)
        except RetryableProviderError:
            return job
        ended_before = state.submit_time is not None and state.submit_time < ctx.started_at
        if not (state.done and not state.readable and ended_before):
            return job
        logger.info(
            "Batch job %s of these records ended %s before this run: submitting them again", job.job_id, state.status
        )
        spec = dataclasses.replace(spec, attempt=spec.attempt + 1)
        job = _create(ctx, spec)
    return job


def _create(ctx: BatchContext, spec: JobSpec) -> SubmittedJob:
    """``submit_job``, retried a few times when the control plane throttles (the same token:
    a retry is the same job)."""
    attempts = 4
    for attempt in range(attempts):
        try:
            return submit_job(
                ctx.bedrock, ctx.s3, spec, location=ctx.location, role_arn=str(ctx.settings.batch_role_arn),
                timeout_hours=ctx.settings.batch_timeout_hours, min_records=ctx.quotas.min_records,
                tags={"media-enrich-run": ctx.run_id[:256]},
            )
        except RetryableProviderError:
            if attempt + 1 == attempts:
                raise
            ctx.sleep(min(30.0, 2.0**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
