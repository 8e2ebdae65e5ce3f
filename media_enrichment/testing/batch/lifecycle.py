"""A batch job's life on the test server: its states one after the other, in its own thread.

``JobRunner.run`` moves a job through ``Submitted``, ``Validating`` (its input read and checked:
``JobFiles.read_input``), ``Scheduled`` and ``InProgress`` (its records answered:
``answers.answer_records``) to ``Completed``, ``BatchPlan.state_seconds`` per state (and at least
``in_progress_seconds`` in InProgress). The plan's ``outcome`` makes it ``Failed`` at validation,
``Expired`` (it never leaves Scheduled) or ``PartiallyCompleted``. A stop request
(StopModelInvocationJob) ends it ``Stopped`` after ``Stopping``; the server's own stop leaves it
as it is. An error of the fake itself (or S3 gone) fails the job, and the server lives on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from media_enrichment.testing.batch.answers import answer_records
from media_enrichment.testing.batch.files import InputFile, InvalidInput, JobFiles
from media_enrichment.testing.batch.job import BatchJob

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

# The package's logger: log lines keep the name they had before the package was split.
logger = logging.getLogger(__package__)

__all__ = ["JobRunner"]


class JobRunner:
    """Runs a server's batch jobs through their states (``run``, in each job's thread).

    Args:
        server: the server (whether it is stopping; its image facts, to answer records).
        files: the jobs' S3 files.
        lock: the jobs' lock (a job's fields change under it).
    """

    def __init__(self, server: BedrockServer, files: JobFiles, lock: threading.RLock):
        self.server = server
        self.files = files
        self.lock = lock

    def run(self, job: BatchJob) -> None:
        """The job's whole life, to its terminal state."""
        plan = job.plan
        try:
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            self._set(job, "Validating")
            files = self._validate(job)
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            if files is None:
                return
            self._set(job, "Scheduled")
            if plan.outcome == "Expired":  # never started within its timeout (scaled to state_seconds)
                if self._pause(job, plan.state_seconds):
                    return self._stopped(job)
                return self._finish(job, "Expired", "The job was scheduled but did not start before its timeout.")
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            self._set(job, "InProgress")
            started = time.monotonic()
            partial = answer_records(self.server, self.files, self.lock, job, files)
            if job.stop_requested.is_set():
                return self._stopped(job)
            remaining = plan.in_progress_seconds - (time.monotonic() - started)
            if remaining > 0 and self._pause(job, remaining):
                return self._stopped(job)
            if partial:
                self._finish(job, "PartiallyCompleted", "Not all of the records could be processed in time.")
            else:
                self._finish(job, "Completed", None)
        except Exception as exc:  # a bug of the fake, or S3 gone: the job fails, the server lives on
            logger.exception("batch job %s failed in the test server", job.job_id)
            self._finish(job, "Failed", f"Internal error: {type(exc).__name__}: {exc}")

    def _validate(self, job: BatchJob) -> list[InputFile] | None:
        """Read and check the input: ``[(bucket, key, records)]``, or None after failing the job."""
        if job.plan.outcome == "Failed":
            self._finish(job, "Failed", job.plan.failure_message)
            return None
        try:
            files = self.files.read_input(job)
        except InvalidInput as refusal:
            self._finish(job, "Failed", str(refusal))
            return None
        with self.lock:
            job.total = sum(len(records) for _, _, records in files)
        return files

    def _pause(self, job: BatchJob, seconds: float) -> bool:
        """Wait ``seconds``; whether the job was asked to stop (or the server stopped)."""
        deadline = time.monotonic() + seconds
        while True:
            if job.stop_requested.is_set() or self.server.stopping:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            job.stop_requested.wait(min(left, 0.05))

    def _stopped(self, job: BatchJob) -> None:
        if self.server.stopping and not job.stop_requested.is_set():
            return
        self._pause_plain(job.plan.state_seconds)
        self._finish(job, "Stopped", None)

    def _pause_plain(self, seconds: float) -> None:
        if seconds > 0 and not self.server.stopping:
            time.sleep(min(seconds, 5.0))

    def _set(self, job: BatchJob, status: str) -> None:
        with self.lock:
            job.move(status)

    def _finish(self, job: BatchJob, status: str, message: str | None) -> None:
        with self.lock:
            job.end(status, message)
