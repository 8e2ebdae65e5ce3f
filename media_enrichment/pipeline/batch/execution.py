"""``BatchExecution``: one run's batch part, its steps in order (see the package docstring)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

from media_enrichment.batch.records import DESCRIBE, EMBED
from media_enrichment.batch.submitted import BatchRun, SubmittedJob
from media_enrichment.pipeline.batch.context import BatchContext, BatchImage, ByRecord, OpenChunks
from media_enrichment.pipeline.batch.following import follow_jobs
from media_enrichment.pipeline.batch.outcome import BatchOutcome, BatchProgress, Stats
from media_enrichment.pipeline.batch.recorded import record_file, recorded_jobs
from media_enrichment.pipeline.batch.rows import stage_ready
from media_enrichment.pipeline.batch.submitting import submit_records
from media_enrichment.pipeline.plan import WorkItem, split_chunks
from media_enrichment.pipeline.staging import StagedChunk, chunk_key, find_staged

__all__ = ["BatchExecution"]


class BatchExecution(BatchContext):
    """The batch part of one run, in one process (see the package docstring); made with the
    arguments of ``BatchContext`` (the run's settings, services, ids, clients and ``sleep``)."""

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
        all_rids = {self.record_id_of(item, kind) for item in items for kind in self.kinds}
        jobs, record_files = recorded_jobs(
            self.staging_dir, all_rids, model_ids=(self.services.describer.model_id, self.services.embedder.model_id),
            storage_options=self.options,
        )
        not_recorded = 0
        if not submit:
            recorded = {rid for job in jobs.values() for rid, _, _ in job.records}
            kept = [item for item in items if all(self.record_id_of(item, kind) in recorded for kind in self.kinds)]
            not_recorded = len(items) - len(kept)
            items = kept
        staged: list[StagedChunk] = []
        open_chunks: OpenChunks = []
        for chunk in split_chunks(items, self.settings.chunk_size):
            key = chunk_key(chunk, versions)
            found = find_staged(staging_dir=self.staging_dir, key=key, storage_options=self.options)
            if found is not None:
                staged.append(found)
            else:
                open_chunks.append((key, chunk))
        images = {item.image_id: BatchImage(item, set(self.kinds)) for _, chunk in open_chunks for item in chunk}
        for image in images.values():
            image.on_demand_only = {DESCRIBE, EMBED} - set(self.kinds)
        by_rid: ByRecord = {}
        for image in images.values():
            for kind in self.kinds:
                by_rid[self.record_id_of(image.item, kind)] = (image, kind)
        run_key = hashlib.sha256("\n".join(sorted(by_rid)).encode()).hexdigest()[:24]
        record_path = record_file(self.staging_dir, run_key)

        # Recorded jobs for the images still to do (not those of chunks staged already).
        jobs = {arn: job for arn, job in jobs.items() if any(rid in by_rid for rid, _, _ in job.records)}
        resumed = len(jobs)
        covered = {rid for job in jobs.values() for rid, _, _ in job.records if rid in by_rid}
        this_run = BatchRun(run_id=self.run_id, source=self.source, batch=self.settings.batch)
        this_run.extend(jobs.values())  # a rewrite of this work's record keeps the jobs it follows
        submitted = submit_records(self, images, by_rid, covered, this_run, record_path) if by_rid and submit else 0
        jobs.update(this_run.jobs)
        if submitted:
            record_files.append(record_path)
        stats = Stats()
        if not wait:
            waiting = not_recorded + sum(1 for image in images.values() if image.needed)
            # Chunks whose images need no job (all below the minimum, or unreadable) are done now.
            staged += stage_ready(self, open_chunks, images, stats)
            return self._outcome(staged, given, jobs, submitted, resumed, stats, record_files, waiting=waiting)
        follow_jobs(self, jobs, by_rid, open_chunks, images, staged, stats, on_progress)
        staged += stage_ready(self, open_chunks, images, stats)
        assert not open_chunks, "every chunk is staged once its jobs ended"
        return self._outcome(staged, given, jobs, submitted, resumed, stats, record_files, waiting=not_recorded)

    def _outcome(
        self, staged: list[StagedChunk], given: int, jobs: dict[str, SubmittedJob], submitted: int,
        resumed: int, stats: Stats, record_files: list[str], *, waiting: int,
    ) -> BatchOutcome:
        return BatchOutcome(
            staged=tuple(staged), images=given, jobs=tuple(job.job_id for job in jobs.values()),
            submitted=submitted, resumed=resumed, waiting=waiting, record_files=tuple(dict.fromkeys(record_files)),
            **dataclasses.asdict(stats),
        )
