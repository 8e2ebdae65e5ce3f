"""What a chunk task needs, in a form that can travel to another process.

With the thread-pool task runner every chunk task runs in the flow's process and shares its
services: one boto3 client, one set of rate gates. On Dask a chunk task runs in a worker
process, perhaps on another machine, and a boto3 client does not pickle. So a task receives a
``ChunkJob`` (the run's settings and identity, all picklable) and ``services_for`` builds the
run's services from it once per process, then hands the same ones to every chunk of that run.
The flow calls ``services_for`` too: this module is the one place a run's services are wired.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from media_enrichment.aws import s3_client
from media_enrichment.aws import storage_options as aws_storage_options
from media_enrichment.catalog import read_bytes
from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.pipeline import ChunkEnricher, ModelVersions
from media_enrichment.providers import build_providers
from media_enrichment.storage import is_remote
from media_enrichment_prefect.tasks.aws import aws_session_from_block
from media_enrichment_prefect.tasks.limits import ensure_rate_limits

#: Runs whose services a process keeps at once (a long-lived worker serves many runs).
_KEEP = 4


@dataclass(frozen=True)
class ChunkJob:
    """One run's settings and identity: everything a chunk task needs besides its images."""

    settings: Settings
    run_id: str
    versions: ModelVersions | None  # what the flow planned with; a worker that would differ refuses
    staging_dir: str  # a local folder or an s3:// prefix (Dataset.staging_dir)
    reads_s3: bool  # the catalogue's images are on S3, so the reader needs a client

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.settings.model_dump_json().encode()).hexdigest()[:16]
        return f"{self.run_id}:{digest}"


@dataclass
class RunServices:
    """The clients and the enricher of one run, in one process."""

    enricher: ChunkEnricher
    s3: Any  # boto3 S3 client, or None when nothing is read from S3
    #: S3 credentials for the dataset's writers (delta-rs, staging) from an AwsCredentials
    #: block; empty when they come from the environment. Secrets: never logged.
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)


def build_services(job: ChunkJob) -> RunServices:
    """Wire a run's services from its settings.

    Bedrock rate limits shared through Prefect (``shared_rate_limits``) are looked up, and
    created if missing, through the Prefect API of the task's context; an ``AwsCredentials``
    block likewise.
    """
    settings = job.settings
    limiters = None
    if settings.provider == "bedrock" and settings.shared_rate_limits:
        limiters = ensure_rate_limits(settings)
    block = settings.aws_credentials_block
    session = aws_session_from_block(block, region=settings.aws_region) if block else None
    describer, embedder = build_providers(settings, limiters=limiters, session=session)
    s3 = s3_client(settings, session=session) if job.reads_s3 else None
    enricher = ChunkEnricher(
        describer=describer,
        embedder=embedder,
        read=partial(read_bytes, s3_client=s3),
        run_id=job.run_id,
        transient_retries=settings.transient_retries,
        retry_delay_s=settings.retry_delay_s,
    )
    options = aws_storage_options(session) if is_remote(job.staging_dir) else {}  # {} without a block
    return RunServices(enricher=enricher, s3=s3, storage_options=options)


_lock = threading.Lock()
_services: OrderedDict[str, RunServices] = OrderedDict()


def services_for(job: ChunkJob) -> RunServices:
    """This process's services for the job's run, built on first use (under a lock, so the
    chunk tasks of one worker share one client and one set of gates).

    Raises:
        ConfigError: this process would write other models or another prompt version than
            the flow planned with (e.g. a Dask worker with another prompt file).
    """
    key = job.key
    with _lock:
        found = _services.get(key)
        if found is None:
            found = build_services(job)
            _services[key] = found
            while len(_services) > _KEEP:
                _services.popitem(last=False)
        else:
            _services.move_to_end(key)
    here = found.enricher.versions
    if job.versions is not None and here != job.versions:
        raise ConfigError(f"this worker would write {here.as_metadata()}, the run planned {job.versions.as_metadata()}")
    return found


def release_services(job: ChunkJob) -> None:
    """Forget a finished run's services in this process."""
    with _lock:
        _services.pop(job.key, None)


def worker_name() -> str:
    """Where a chunk ran: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"
