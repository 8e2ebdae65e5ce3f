"""A chunk's work, in whichever process runs it: the run's ``ChunkJob``, the process's services.

A chunk task receives the run's ``ChunkJob`` (its settings and identity, all picklable) and calls
``run_chunk(job, items)`` (or ``run_batch`` for the plan's batch work), which builds the run's
services from the job once per process (``services_for``, kept for the last few runs) and hands
the same ones to every chunk of that run there: one client and one set of call windows per
model and process. In the process that opened the run (``driver.open_run``) they are the run's
own. What only the orchestrator can supply (a session of its credentials, shared rate limiters)
comes through an ``InputsFactory`` called when a process builds services.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from media_enrichment.catalog import Roots
from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.pipeline.batch import BatchExecution, BatchOutcome, BatchProgress
from media_enrichment.pipeline.execution import ChunkResult
from media_enrichment.pipeline.plan import ModelVersions, WorkItem
from media_enrichment.pipeline.services import RunServices, ServiceInputs, build_services
from media_enrichment.pipeline.staging import StagedChunk, chunk_key, find_staged, stage_chunk

__all__ = ["ChunkJob", "InputsFactory", "keep_services", "release_services", "run_batch", "run_chunk", "services_for", "worker_name"]

#: Runs whose services a process keeps at once (a long-lived worker serves many runs).
_KEEP = 4

#: Supplies a process's ``ServiceInputs`` from the run's settings (called once per process and run).
InputsFactory = Callable[[Settings], ServiceInputs]


@dataclass(frozen=True)
class ChunkJob:
    """One run's settings and identity: everything a chunk needs besides its images (picklable)."""

    settings: Settings
    run_id: str
    versions: ModelVersions | None  # what the run planned with; a worker that would differ refuses
    staging_dir: str  # a local folder or an s3:// prefix (Dataset.staging_dir)
    reads_s3: bool  # the catalogue's images are on S3, so the reader needs a client
    roots: Roots | None = None  # where images may be read (resolved once); None: allowed_roots only

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.settings.model_dump_json().encode()).hexdigest()[:16]
        return f"{self.run_id}:{digest}"


_lock = threading.Lock()
_services: OrderedDict[str, RunServices] = OrderedDict()


def _keep(key: str, services: RunServices) -> None:
    _services[key] = services
    _services.move_to_end(key)
    while len(_services) > _KEEP:
        _services.popitem(last=False)[1].close()


def keep_services(key: str, services: RunServices) -> None:
    """Hand a run's services (built by the process that opened it) to the chunks this process
    runs, as if ``services_for`` had built them."""
    with _lock:
        _keep(key, services)


def services_for(job: ChunkJob, *, inputs: InputsFactory | None = None) -> RunServices:
    """This process's services for the job's run, built on first use (under a lock, so the
    chunks of one process share one client and one set of gates).

    Args:
        job: the run's job.
        inputs: supplies the orchestrator's session and limiters when this process builds the
            services (not called when they exist already).

    Raises:
        ConfigError: this process would write other models or another prompt version than
            the run planned with (e.g. a Dask worker with another prompt file).
    """
    key = job.key
    with _lock:
        found = _services.get(key)
        if found is None:
            given = inputs(job.settings) if inputs is not None else ServiceInputs()
            found = build_services(
                job.settings, run_id=job.run_id, staging_dir=job.staging_dir, reads_s3=job.reads_s3, inputs=given,
                roots=job.roots,
            )
        _keep(key, found)
    here = found.versions
    if job.versions is not None and here != job.versions:
        raise ConfigError(f"this worker would write {here.as_metadata()}, the run planned {job.versions.as_metadata()}")
    return found


def release_services(job: ChunkJob) -> None:
    """Forget a finished run's services in this process."""
    with _lock:
        services = _services.pop(job.key, None)
    if services is not None:
        services.close()


def worker_name() -> str:
    """Where a chunk ran: host and process id."""
    return f"{_host()}:{os.getpid()}"


@functools.lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()


def run_chunk(job: ChunkJob, items: Sequence[WorkItem], *, inputs: InputsFactory | None = None) -> StagedChunk:
    """Enrich one chunk and stage it, unless a complete staged entry of it exists already.

    An entry staged by an earlier attempt, a run that died, or a run going on now is reused
    without calling any model. A chunk interrupted in this process (an error while enriching
    or staging) keeps what it had done: the next attempt here enriches only the rest, and
    stages a finished result without calling a model again.

    Args:
        job: the run's job.
        items: the chunk's images.
        inputs: the orchestrator's inputs, for a process that builds the run's services.

    Returns:
        The staged chunk, with ``worker`` naming this process.

    Raises:
        FatalProviderError, CatalogAccessError: no image can succeed.
        DatasetLocationError: the staging area cannot be written.
        ConfigError: this process would write other versions than planned.
    """
    services = services_for(job, inputs=inputs)
    options = services.storage_options
    key = chunk_key(items, services.versions)
    staged = find_staged(staging_dir=job.staging_dir, key=key, storage_options=options)
    if staged is None:
        partial = services.unstaged.setdefault(key, ChunkResult())
        result = services.executor.enrich(items, result=partial)
        staged = stage_chunk(result, staging_dir=job.staging_dir, key=key, run_id=job.run_id, storage_options=options)
        services.unstaged.pop(key, None)
    return dataclasses.replace(staged, worker=worker_name())


def run_batch(
    job: ChunkJob,
    items: Sequence[WorkItem],
    *,
    inputs: InputsFactory | None = None,
    wait: bool = True,
    on_progress: Callable[[BatchProgress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    source: str | None = None,
    submit: bool = True,
) -> BatchOutcome:
    """Enrich items through Bedrock batch jobs and stage them (``BatchExecution``).

    Args:
        job: the run's job.
        items: the plan's batch items (``RunDriver.batch_items``).
        inputs: the orchestrator's inputs, for a process that builds the run's services.
        wait: follow the jobs to their end; False: submit, record them and return.
        on_progress: called with the jobs' progress after each look at them.
        sleep: how to wait between looks (tests pass a fast one).
        source: the run's catalogue, kept in the record of its jobs.
        submit: False (``collect``): follow recorded jobs only; items without one wait.

    Returns:
        The staged chunks and counts (empty when there are no items).

    Raises:
        FatalProviderError: a job cannot be created (access, role, model).
        DatasetLocationError: the staging area or the batch location cannot be written.
    """
    if not items:
        return BatchOutcome()
    services = services_for(job, inputs=inputs)
    execution = BatchExecution(
        job.settings, services, run_id=job.run_id, staging_dir=job.staging_dir, sleep=sleep, source=source
    )
    outcome = execution.run(items, wait=wait, on_progress=on_progress, submit=submit)
    return dataclasses.replace(outcome, staged=tuple(dataclasses.replace(c, worker=worker_name()) for c in outcome.staged))
