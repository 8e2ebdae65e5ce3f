"""Batch inference as a way of executing a plan's calls: jobs in, rows and failure rows out.

``BatchExecution.run(items)`` takes the plan's items the driver chose for batch inference and
hands back staged chunks, exactly as chunk tasks do, so commit, failures and the summary are the
same code as on demand:

1. The items are cut into chunks (``chunk_size``, the plan's order) keyed by ``chunk_key``; a
   chunk already staged (by a run that died before its commit) is reused, and its images need
   no job at all.
2. Every record id is computed from the item alone (``records.record_id``: no image is read for
   it). Jobs recorded in the staging area (``<staging>/batch/<key>.json``, a ``BatchRun``) that
   hold some of these records are followed instead of submitting them again.
3. The other records are built from the same request bodies as on demand (the image read and
   prepared once, for both models), in bounded groups: at most one job's quota of records
   (``batch_max_records_per_job``, ``batch_max_bytes_per_job``) is held at once; each group is
   split into jobs (``split_jobs``), submitted, and the run's ``BatchRun`` rewritten before the
   next group is built, and before any waiting. A model whose records are fewer than
   ``batch_min_records`` gets no job: those calls are made on demand.
4. The jobs are followed (``on_progress``: records processed of total); the results of each job
   are read as it ends. A chunk whose images all have their answers is turned into rows with
   ``execution.asset_row`` (the on-demand row builder) and staged at once.
5. Records that came back with an ``error``, an ``invalid`` answer or ``missing``, and every
   record of a ``Failed`` or ``Expired`` job, go on demand (``batch_fallback=on-demand``: the
   describer's own corrective turns; a description already obtained from the job is kept when
   only the vector is missing), or become failure rows (``fail``). Nothing is dropped.

With ``wait=False`` the jobs are submitted and recorded, and nothing is waited for: a later run
(or ``media-enrich collect``) follows them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media_enrichment import storage
from media_enrichment.batch.errors import BatchError, BatchTooSmallError
from media_enrichment.batch.jobs import (
    BatchLocation,
    BatchRun,
    JobState,
    SubmittedJob,
    follow,
    submit_job,
)
from media_enrichment.batch.quotas import BatchQuotas
from media_enrichment.batch.records import (
    DESCRIBE,
    EMBED,
    BatchRecord,
    JobSpec,
    describe_record,
    describe_version,
    embed_record,
    embed_version,
    record_id,
    split_jobs,
)
from media_enrichment.batch.results import OK, RecordResult, read_results
from media_enrichment.config import Settings
from media_enrichment.errors import (
    CatalogAccessError,
    ConfigError,
    EnrichmentError,
    FatalProviderError,
    RetryableProviderError,
)
from media_enrichment.images import SourceFacts, inspect_image, prepare_images
from media_enrichment.pipeline.execution import ChunkResult, asset_row
from media_enrichment.pipeline.plan import WorkItem, failure_row, split_chunks
from media_enrichment.pipeline.services import RunServices
from media_enrichment.pipeline.staging import (
    StagedChunk,
    chunk_key,
    find_staged,
    stage_chunk,
)
from media_enrichment.providers.base import Description

logger = logging.getLogger(__name__)

__all__ = [
    "BatchExecution",
    "BatchOutcome",
    "BatchProgress",
    "BatchRecordError",
    "batchable_kinds",
    "record_summary",
    "recorded_runs",
    "records_folder",
    "remove_records",
]

#: Submissions of the same records after jobs of theirs ended without results, in one run.
_RESUBMITS = 2
#: Where a dataset's staging area keeps the record of its batch jobs.
RECORDS_FOLDER = "batch"
_RECORD_SUFFIX = ".json"


class BatchRecordError(BatchError):
    """A record a batch job did not answer usably (its failure row's error, with ``batch_fallback=fail``)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


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


def batchable_kinds(services: RunServices) -> tuple[str, ...]:
    """The calls of this run a batch job can make: Claude's (``BedrockDescriber``) and Titan's
    (``BedrockEmbedder``); other embedders are called on demand."""
    from media_enrichment.providers.bedrock.describer import BedrockDescriber
    from media_enrichment.providers.bedrock.embedders import BedrockEmbedder

    kinds = []
    if isinstance(services.describer, BedrockDescriber):
        kinds.append(DESCRIBE)
    if type(services.embedder) is BedrockEmbedder:
        kinds.append(EMBED)
    return tuple(kinds)


def records_folder(staging_dir: str) -> str:
    """The folder of a staging area holding its ``BatchRun`` records."""
    return storage.join(staging_dir, RECORDS_FOLDER)


def quotas_of(settings: Settings) -> BatchQuotas:
    return BatchQuotas(
        min_records=settings.batch_min_records,
        max_records_per_file=settings.batch_max_records_per_file,
        max_bytes_per_file=settings.batch_max_bytes_per_file,
        max_records_per_job=settings.batch_max_records_per_job,
        max_bytes_per_job=settings.batch_max_bytes_per_job,
    )


def batch_clients(settings: Settings, services: RunServices) -> tuple[Any, Any]:
    """The run's ``bedrock`` (control plane, botocore's retries) and S3 clients, from its session."""
    from botocore.config import Config

    from media_enrichment.aws import USER_AGENT_EXTRA, make_session

    session = services.session or make_session(profile=settings.aws_profile, region=settings.aws_region)
    config = Config(
        retries={"mode": settings.bedrock_retry_mode, "total_max_attempts": settings.bedrock_max_attempts},
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=min(settings.bedrock_read_timeout, 60.0),
        user_agent_extra=USER_AGENT_EXTRA,
    )
    return session.client("bedrock", config=config), session.client("s3")


@dataclass
class _Image:
    """What is known of one batch item: its answers so far and what is left to do."""

    item: WorkItem
    needed: set[str]  # the kinds still waiting for a job
    description: Description | None = None
    vector: np.ndarray | None = None
    facts: SourceFacts | None = None
    problems: dict[str, str] = field(default_factory=dict)  # kind -> why it goes on demand / fails
    on_demand_only: set[str] = field(default_factory=set)  # kinds never batched (always on demand)
    failure: dict[str, Any] | None = None  # a read or prepare failure row
    prior: tuple[Any, int, int] | None = None  # an unusable batch answer (ParsedAnswer) and its tokens
    from_batch: set[str] = field(default_factory=set)


class BatchExecution:
    """The batch part of one run, in one process (see the module docstring).

    Args:
        settings: the run's settings.
        services: the run's services (providers, reader, executor for on-demand fallbacks).
        run_id: the run's id (rows, failure rows, the record's ``run_id``).
        staging_dir: the dataset's staging area.
        bedrock, s3: clients (default: from the run's session).
        sleep: how to wait between polls (tests pass a fast one).
        source: the run's catalogue, kept in the record of its jobs (for ``media-enrich collect``).
    """

    def __init__(
        self, settings: Settings, services: RunServices, *, run_id: str, staging_dir: str, bedrock: Any = None,
        s3: Any = None, sleep: Callable[[float], None] = time.sleep, source: str | None = None,
    ):
        self.settings = settings
        self.source = source
        self.services = services
        self.run_id = run_id
        self.staging_dir = staging_dir
        self.options = services.storage_options
        self.sleep = sleep
        if bedrock is None or s3 is None:
            made = batch_clients(settings, services)
            bedrock, s3 = bedrock or made[0], s3 or made[1]
        self.bedrock, self.s3 = bedrock, s3
        uri = settings.batch_location_uri
        if uri is None:
            raise ConfigError("batch inference needs MEDIA_ENRICH_BATCH_S3_URI (the dataset is not on S3)")
        self.location = BatchLocation.from_uri(uri)
        self.quotas = quotas_of(settings)
        self.kinds = batchable_kinds(services)
        self.started_at = datetime.datetime.now(datetime.UTC)

    # -- the record ids of a run, computed without reading any image -------------------------------

    def _record_id(self, item: WorkItem, kind: str) -> str:
        provider = self.services.describer if kind == DESCRIBE else self.services.embedder
        version = describe_version(provider) if kind == DESCRIBE else embed_version(provider)
        return record_id(item.image_id, item.content_sha256, kind=kind, model_id=provider.model_id, version=version)

    def run(
        self, items: Sequence[WorkItem], *, wait: bool = True, on_progress: Callable[[BatchProgress], None] | None = None,
        submit: bool = True,
    ) -> BatchOutcome:
        """Enrich ``items`` through batch jobs (and on demand for what the jobs leave).

        Args:
            items: the items the driver chose for batch inference.
            wait: follow the jobs until they end and stage the results; False: submit, record
                and return (``BatchOutcome.waiting`` says how many items wait for jobs).
            on_progress: called after each look at the jobs.
            submit: False (``collect``): only the items whose records are all in recorded jobs
                are enriched; nothing is submitted, and the others wait for a later run.

        Returns:
            The outcome: staged chunks and counts.

        Raises:
            FatalProviderError: a job cannot be created (no access, bad role, unknown model).
            DatasetLocationError: the staging area or the batch location cannot be written.
        """
        versions = self.services.versions
        items = list(items)
        given = len(items)
        all_rids = {self._record_id(item, kind) for item in items for kind in self.kinds}
        jobs, record_files = self._recorded_jobs(all_rids)
        not_recorded = 0
        if not submit:
            recorded = {rid for job in jobs.values() for rid, _, _ in job.records}
            kept = [item for item in items if all(self._record_id(item, kind) in recorded for kind in self.kinds)]
            not_recorded = len(items) - len(kept)
            items = kept
        staged: list[StagedChunk] = []
        open_chunks: list[tuple[str, list[WorkItem]]] = []
        for chunk in split_chunks(items, self.settings.chunk_size):
            key = chunk_key(chunk, versions)
            found = find_staged(staging_dir=self.staging_dir, key=key, storage_options=self.options)
            if found is not None:
                staged.append(found)
            else:
                open_chunks.append((key, chunk))
        images = {item.image_id: _Image(item, set(self.kinds)) for _, chunk in open_chunks for item in chunk}
        for image in images.values():
            image.on_demand_only = {DESCRIBE, EMBED} - set(self.kinds)
        by_rid: dict[str, tuple[_Image, str]] = {}
        for image in images.values():
            for kind in self.kinds:
                by_rid[self._record_id(image.item, kind)] = (image, kind)
        run_key = hashlib.sha256("\n".join(sorted(by_rid)).encode()).hexdigest()[:24]
        record_path = storage.join(records_folder(self.staging_dir), f"{run_key}{_RECORD_SUFFIX}")

        # Recorded jobs for the images still to do (not those of chunks staged already).
        jobs = {arn: job for arn, job in jobs.items() if any(rid in by_rid for rid, _, _ in job.records)}
        resumed = len(jobs)
        covered = {rid for job in jobs.values() for rid, _, _ in job.records if rid in by_rid}
        this_run = BatchRun(run_id=self.run_id, source=self.source, batch=self.settings.batch)
        this_run.extend(jobs.values())  # a rewrite of this work's record keeps the jobs it follows
        submitted = self._submit(images, by_rid, covered, this_run, record_path) if by_rid and submit else 0
        jobs.update(this_run.jobs)
        if submitted:
            record_files.append(record_path)
        stats = _Stats()
        if not wait:
            waiting = not_recorded + sum(1 for image in images.values() if image.needed)
            # Chunks whose images need no job (all below the minimum, or unreadable) are done now.
            staged += self._stage_ready(open_chunks, images, stats)
            return self._outcome(staged, given, jobs, submitted, resumed, stats, record_files, waiting=waiting)
        self._follow(jobs, by_rid, open_chunks, images, staged, stats, on_progress)
        staged += self._stage_ready(open_chunks, images, stats)
        assert not open_chunks, "every chunk is staged once its jobs ended"
        return self._outcome(staged, given, jobs, submitted, resumed, stats, record_files, waiting=not_recorded)

    def _outcome(
        self, staged: list[StagedChunk], given: int, jobs: dict[str, SubmittedJob], submitted: int,
        resumed: int, stats: _Stats, record_files: list[str], *, waiting: int,
    ) -> BatchOutcome:
        return BatchOutcome(
            staged=tuple(staged), images=given, jobs=tuple(job.job_id for job in jobs.values()),
            submitted=submitted, resumed=resumed, described=stats.described, embedded=stats.embedded,
            input_tokens=stats.input_tokens, output_tokens=stats.output_tokens, on_demand=stats.on_demand,
            waiting=waiting, record_files=tuple(dict.fromkeys(record_files)),
        )

    # -- recorded jobs ------------------------------------------------------------------------------

    def _recorded_jobs(self, by_rid: Collection[str]) -> tuple[dict[str, SubmittedJob], list[str]]:
        """Jobs recorded in the staging area holding some of these records, and their record files."""
        jobs: dict[str, SubmittedJob] = {}
        files: list[str] = []
        folder = records_folder(self.staging_dir)
        for path in storage.list_files(folder, suffix=_RECORD_SUFFIX, options=self.options):
            try:
                run = BatchRun.from_json(storage.read_bytes(path, options=self.options))
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("Ignoring %s, not a batch run record: %s", path, exc)
                continue
            used = False
            for job in run.jobs.values():
                if job.model_id not in (self.services.describer.model_id, self.services.embedder.model_id):
                    continue
                if any(rid in by_rid for rid, _, _ in job.records):
                    jobs[job.job_arn] = job
                    used = True
            if used:
                files.append(path)
                logger.info("Following the batch jobs recorded in %s instead of submitting them again", path)
        return jobs, files

    # -- building and submitting records, a bounded group at a time --------------------------------

    def _submit(
        self, images: dict[str, _Image], by_rid: dict[str, tuple[_Image, str]], covered: set[str], run: BatchRun,
        record_path: str,
    ) -> int:
        """Build, split and submit the records not covered by a recorded job; returns jobs submitted."""
        wanted: dict[str, list[str]] = {kind: [] for kind in self.kinds}
        for rid, (image, kind) in by_rid.items():
            if rid in covered:
                continue
            wanted[kind].append(rid)
        for kind, rids in wanted.items():
            if len(rids) < self.quotas.min_records:
                # Too few for a job: on demand, without reading any image for a record.
                for rid in rids:
                    image, _ = by_rid[rid]
                    self._left(image, kind, f"fewer {kind} records than a job's minimum ({self.quotas.min_records})",
                               always=True)
                wanted[kind] = []
        todo = sorted({by_rid[rid][0].item.image_id for rids in wanted.values() for rid in rids})
        if not todo:
            return 0
        submitted = 0
        group: list[BatchRecord] = []
        counts = dict.fromkeys(self.kinds, 0)
        sizes = dict.fromkeys(self.kinds, 0)
        wanted_ids = {rid for rids in wanted.values() for rid in rids}
        for image_id in todo:
            image = images[image_id]
            records = self._records(image, wanted_ids)
            if not records:
                continue
            full = any(
                counts[r.kind] + 1 > self.quotas.max_records_per_job or sizes[r.kind] + r.size > self.quotas.max_bytes_per_job
                for r in records
            )
            if full and group:
                submitted += self._submit_group(group, by_rid, run, record_path)
                group, counts, sizes = [], dict.fromkeys(self.kinds, 0), dict.fromkeys(self.kinds, 0)
            for r in records:
                group.append(r)
                counts[r.kind] += 1
                sizes[r.kind] += r.size
        if group:
            submitted += self._submit_group(group, by_rid, run, record_path)
        return submitted

    def _records(self, image: _Image, wanted: set[str]) -> list[BatchRecord]:
        """The image's records still to submit (it is read and prepared once, for both models);
        a read or prepare error becomes its failure row, as on demand."""
        services = self.services
        item = image.item
        stage = "read"
        try:
            data = services.read(item.source_uri)
            stage = "prepare"
            facts, (for_describer, for_embedder) = prepare_images(
                data, [services.describer.image_limits, services.embedder.image_limits], content_sha256=item.content_sha256
            )
        except CatalogAccessError:
            raise
        except EnrichmentError as exc:
            image.failure = failure_row(
                image_id=item.image_id, source_uri=item.source_uri, stage=stage, error=exc, run_id=self.run_id,
                content_sha256=item.content_sha256,
            )
            image.needed.clear()
            return []
        image.facts = facts
        out = []
        if DESCRIBE in self.kinds:
            record = describe_record(services.describer, item.image_id, item.content_sha256, for_describer)
            if record.record_id in wanted:
                out.append(record)
        if EMBED in self.kinds:
            record = embed_record(services.embedder, item.image_id, item.content_sha256, for_embedder)
            if record.record_id in wanted:
                out.append(record)
        return out

    def _submit_group(
        self, group: list[BatchRecord], by_rid: dict[str, tuple[_Image, str]], run: BatchRun, record_path: str
    ) -> int:
        split = split_jobs(group, quotas=self.quotas)
        for record in split.below_minimum:
            image, kind = by_rid[record.record_id]
            self._left(image, kind, f"fewer {kind} records than a job's minimum ({self.quotas.min_records})", always=True)
        submitted = 0
        for spec in split.jobs:
            try:
                job = self._submit_one(spec)
            except BatchTooSmallError as exc:  # the model's quota is higher than the setting
                logger.warning("%s: its records go on demand (raise MEDIA_ENRICH_BATCH_MIN_RECORDS to match)", exc)
                for record in spec.records:
                    image, kind = by_rid[record.record_id]
                    self._left(image, kind, str(exc), always=True)
                continue
            run.add(job)
            submitted += 1
            # Recorded before anything waits: a run that dies now leaves the job to the next one.
            storage.write_bytes(record_path, run.to_json().encode(), options=self.options)
            logger.info("Submitted batch job %s (%s, %d records)", job.job_id, spec.model_id, spec.record_count)
        return submitted

    def _submit_one(self, spec: JobSpec) -> SubmittedJob:
        """Submit a job; when its token answers a job of an earlier run that ended without results
        (Failed, Expired), submit the records again as the next attempt (another name and token),
        at most ``_RESUBMITS`` times."""
        job = self._create(spec)
        for _ in range(_RESUBMITS):
            try:
                state = follow(self.bedrock, job)
            except RetryableProviderError:
                return job
            ended_before = state.submit_time is not None and state.submit_time < self.started_at
            if not (state.done and not state.readable and ended_before):
                return job
            logger.info(
                "Batch job %s of these records ended %s before this run: submitting them again", job.job_id, state.status
            )
            spec = dataclasses.replace(spec, attempt=spec.attempt + 1)
            job = self._create(spec)
        return job

    def _create(self, spec: JobSpec) -> SubmittedJob:
        """``submit_job``, retried a few times when the control plane throttles (the same token:
        a retry is the same job)."""
        attempts = 4
        for attempt in range(attempts):
            try:
                return submit_job(
                    self.bedrock, self.s3, spec, location=self.location, role_arn=str(self.settings.batch_role_arn),
                    timeout_hours=self.settings.batch_timeout_hours, min_records=self.quotas.min_records,
                    tags={"media-enrich-run": self.run_id[:256]},
                )
            except RetryableProviderError:
                if attempt + 1 == attempts:
                    raise
                self.sleep(min(30.0, 2.0**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    # -- following ----------------------------------------------------------------------------------

    def _follow(
        self, jobs: dict[str, SubmittedJob], by_rid: dict[str, tuple[_Image, str]],
        open_chunks: list[tuple[str, list[WorkItem]]], images: dict[str, _Image], staged: list[StagedChunk],
        stats: _Stats, on_progress: Callable[[BatchProgress], None] | None,
    ) -> None:
        pending = dict(jobs)
        states: dict[str, JobState] = {}
        while pending:
            for arn, job in list(pending.items()):
                try:
                    state = follow(self.bedrock, job)
                except RetryableProviderError as exc:
                    logger.info("batch job %s: no state this time (%s)", job.job_id, exc)
                    continue
                states[arn] = state
                if state.done:
                    del pending[arn]
                    self._absorb(job, state, by_rid)
                    logger.info(
                        "Batch job %s ended %s (%s of %s records processed)%s", job.job_id, state.status,
                        state.processed, state.total, f": {state.message}" if state.message else "",
                    )
            if on_progress is not None:
                on_progress(_progress(jobs, states))
            staged += self._stage_ready(open_chunks, images, stats)
            if pending:
                self.sleep(self.settings.batch_poll_s)

    def _absorb(self, job: SubmittedJob, state: JobState, by_rid: dict[str, tuple[_Image, str]]) -> None:
        """Take a finished job's results into the images they are for."""
        ours = [rid for rid, _, _ in job.records if rid in by_rid]
        if not state.readable:
            for rid in ours:
                image, kind = by_rid[rid]
                self._left(image, kind, f"batch job {job.job_id} ended {state.status}: {state.message or 'no results'}",
                           code=f"Batch{state.status}")
            return
        results = read_results(self.s3, job, embedder=self.services.embedder if job.kind == EMBED else None)
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
                self._left(image, kind, _why(result, job), code=f"Batch{result.status.capitalize()}")

    def _left(self, image: _Image, kind: str, why: str, *, code: str = "BatchBelowMinimum", always: bool = False) -> None:
        """A call the jobs will not make: on demand (``always``, or per ``batch_fallback``), or a failure."""
        image.needed.discard(kind)
        if always:
            image.on_demand_only.add(kind)
        else:
            image.problems[kind] = f"{code}\t{why}"

    # -- rows ---------------------------------------------------------------------------------------

    def _stage_ready(
        self, open_chunks: list[tuple[str, list[WorkItem]]], images: dict[str, _Image], stats: _Stats
    ) -> list[StagedChunk]:
        """Stage every chunk whose images have all their answers (or will get none from a job)."""
        done: list[StagedChunk] = []
        for entry in list(open_chunks):
            key, chunk = entry
            if any(images[item.image_id].needed for item in chunk):
                continue
            result = ChunkResult()
            on_demand = [item for item in chunk if not self._finish(images[item.image_id], result, stats)]
            if on_demand:
                # Descriptions the jobs did not give: the on-demand executor does them all (its image
                # threads, its transient retries, the describer's corrective turns).
                stats.on_demand += len(on_demand)
                self.services.executor.enrich(on_demand, result=result)
            done.append(
                stage_chunk(result, staging_dir=self.staging_dir, key=key, run_id=self.run_id, storage_options=self.options)
            )
            open_chunks.remove(entry)
        return done

    def _finish(self, image: _Image, result: ChunkResult, stats: _Stats) -> bool:
        """The image's row or failure row into ``result``, from its batch answers (a vector the
        job did not give is made on demand); False: its description must be made on demand."""
        item = image.item
        if image.failure is not None:
            result.failures.append(image.failure)
            return True
        fallback = self.settings.batch_fallback == "on-demand"
        missing = {DESCRIBE, EMBED} - image.from_batch
        failed = {kind: why for kind, why in image.problems.items() if not fallback and kind not in image.on_demand_only}
        if failed:
            kind = DESCRIBE if DESCRIBE in failed else EMBED
            code, _, message = failed[kind].partition("\t")
            result.failures.append(
                failure_row(
                    image_id=item.image_id, source_uri=item.source_uri, stage=kind,
                    error=BatchRecordError(message, code=code), run_id=self.run_id, content_sha256=item.content_sha256,
                )
            )
            return True
        if DESCRIBE in missing and image.prior is None:
            return False
        if not missing:
            row = self._row(image)
            if row is None:
                result.failures.append(image.failure)  # type: ignore[arg-type]
                return True
            result.rows.append(row)
        else:
            stats.on_demand += 1
            row = self._complete_on_demand(image, result)
            if row is None:
                return True
            result.rows.append(row)
        if DESCRIBE in image.from_batch and image.description is not None:
            stats.described += 1
            stats.input_tokens += image.description.input_tokens
            stats.output_tokens += image.description.output_tokens
        if EMBED in image.from_batch:
            stats.embedded += 1
        return True

    def _facts(self, image: _Image) -> SourceFacts | None:
        """The facts of an image this run did not read (its jobs were picked up from a record):
        read and checked again (``inspect_image``: no re-encoding), with the plan's hash."""
        item = image.item
        stage = "read"
        try:
            data = self.services.read(item.source_uri)
            stage = "prepare"
            facts = dataclasses.replace(inspect_image(data), content_sha256=item.content_sha256)
        except CatalogAccessError:
            raise
        except EnrichmentError as exc:
            image.failure = failure_row(
                image_id=item.image_id, source_uri=item.source_uri, stage=stage, error=exc, run_id=self.run_id,
                content_sha256=item.content_sha256,
            )
            return None
        return facts

    def _row(self, image: _Image) -> dict[str, Any] | None:
        if image.facts is None:  # a job picked up from a record: this run never read the image
            image.facts = self._facts(image)
            if image.facts is None:
                return None
        assert image.description is not None and image.vector is not None
        return asset_row(
            image.item, image.facts, image.description, image.vector, describer=self.services.describer,
            embedder=self.services.embedder, run_id=self.run_id, batch=self.settings.batch,
        )

    def _complete_on_demand(self, image: _Image, result: ChunkResult) -> dict[str, Any] | None:
        """Make on demand what the jobs did not give, keeping what they did: a vector is kept, a
        description is kept (only Titan is called), and an unusable description is followed by
        a corrective turn (``BedrockDescriber.describe(prior=...)``), not asked again from scratch.
        Transient errors get the run's transient retries; other errors are the image's failure row.
        """
        item = image.item
        stage = "read"
        retries = self.services.retries.transient_retries
        description, vector = image.description, image.vector
        for attempt in range(retries + 1):
            try:
                stage = "read"
                data = self.services.read(item.source_uri)
                stage = "prepare"
                facts, (for_describer, for_embedder) = prepare_images(
                    data, [self.services.describer.image_limits, self.services.embedder.image_limits],
                    content_sha256=item.content_sha256,
                )
                del data
                stage = "describe"
                if description is None:
                    if image.prior is not None:
                        description = self.services.describer.describe(for_describer, prior=image.prior)  # type: ignore[call-arg]
                    else:
                        description = self.services.describer.describe(for_describer)
                stage = "embed"
                if vector is None:
                    vector = self.services.embedder.embed_image(for_embedder)
                break
            except (FatalProviderError, CatalogAccessError):
                raise
            except RetryableProviderError as exc:
                if attempt < retries:
                    self.sleep(self.services.retries.pass_delay_s * 2**attempt * random.uniform(0.5, 1.5))
                    continue
                error: EnrichmentError = exc
            except EnrichmentError as exc:
                error = exc
            result.failures.append(
                failure_row(
                    image_id=item.image_id, source_uri=item.source_uri, stage=stage, error=error,
                    run_id=self.run_id, attempts=attempt + 1, content_sha256=item.content_sha256,
                )
            )
            return None
        return asset_row(
            item, facts, description, vector, describer=self.services.describer, embedder=self.services.embedder,
            run_id=self.run_id, batch=self.settings.batch,
        )


@dataclass
class _Stats:
    described: int = 0
    embedded: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    on_demand: int = 0


def _why(result: RecordResult, job: SubmittedJob) -> str:
    detail = f"{result.error_code}: {result.error_message}" if result.error_code else result.status
    return f"batch job {job.job_id}: record {result.record_id} {result.status} ({detail})"


def _progress(jobs: dict[str, SubmittedJob], states: dict[str, JobState]) -> BatchProgress:
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


def recorded_runs(staging_dir: str, *, storage_options: storage.Options = None) -> list[BatchRun]:
    """The ``BatchRun`` records of a staging area (unreadable ones skipped), oldest name first."""
    runs = []
    for path in storage.list_files(records_folder(staging_dir), suffix=_RECORD_SUFFIX, options=storage_options):
        try:
            runs.append(BatchRun.from_json(storage.read_bytes(path, options=storage_options)))
        except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignoring %s, not a batch run record: %s", path, exc)
    return runs


def remove_records(paths: Iterable[str], *, storage_options: storage.Options = None) -> None:
    """Delete ``BatchRun`` records whose jobs' rows are committed."""
    for path in paths:
        storage.delete(path, options=storage_options)


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
