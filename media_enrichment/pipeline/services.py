"""A run's services, wired once from its settings: providers, S3 client, reader, executor, storage options.

What an orchestrator owns is passed in, never imported: the boto3 session of its credentials
(e.g. a prefect-aws ``AwsCredentials`` block) and rate limiters shared across runs (e.g.
Prefect global concurrency limits). Nothing here creates a client at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from media_enrichment.aws import resolve_region, s3_client
from media_enrichment.aws import storage_options as aws_storage_options
from media_enrichment.catalog import Roots, read_bytes, roots_for
from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline.execution import ChunkEnricher, ChunkResult, Executor, image_threads
from media_enrichment.pipeline.plan import ModelVersions, Reader
from media_enrichment.pipeline.retries import RetryBudget
from media_enrichment.providers import build_providers
from media_enrichment.providers.base import Describer, Embedder
from media_enrichment.storage import is_remote


@dataclass(frozen=True)
class ServiceInputs:
    """What the orchestrator supplies to a run's services (both optional).

    Attributes:
        session: a boto3 session whose credentials and region the run's AWS clients and
            writers use; None: boto3's standard chain.
        limiters: rate limiters by key (``"describer-rpm"``, ``"describer-tpm"``,
            ``"embedder-rpm"``) shared across runs and workers, used by the Bedrock providers
            instead of local token buckets; None: local buckets.
    """

    session: Any = None
    limiters: Mapping[str, Any] | None = None


@dataclass
class RunServices:
    """The clients and the executor of one run, in one process."""

    describer: Describer
    embedder: Embedder
    read: Reader
    executor: Executor
    retries: RetryBudget
    s3: Any  # boto3 S3 client, or None when nothing is read from S3
    #: S3 credentials for the dataset's writers (delta-rs, staging) from the injected session;
    #: empty when they come from the environment. Secrets: never logged.
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    #: Results of chunks whose staging failed, by chunk key: a retry of the chunk in this
    #: process stages them without calling a model again.
    unstaged: dict[str, ChunkResult] = field(default_factory=dict, repr=False)
    #: The boto3 session the run's clients were made from (the orchestrator's, or None: boto3's
    #: standard chain); batch inference makes its control-plane and S3 clients from it.
    session: Any = field(default=None, repr=False)

    @property
    def versions(self) -> ModelVersions:
        """The models and prompt of the rows these services write."""
        return self.executor.versions

    def close(self) -> None:
        """Release the executor's threads."""
        self.executor.close()

    def rate_control(self) -> dict[str, Any]:
        """The rate gates' statistics per provider that has one (Bedrock)."""
        return {
            name: provider.gate.stats()
            for name, provider in (("describer", self.describer), ("embedder", self.embedder))
            if getattr(provider, "gate", None) is not None
        }


def build_services(
    settings: Settings,
    *,
    run_id: str,
    staging_dir: str,
    reads_s3: bool,
    inputs: ServiceInputs = ServiceInputs(),
    roots: Roots | None = None,
) -> RunServices:
    """Wire a run's services from its settings.

    Args:
        settings: the run's settings.
        run_id: stored on every row and failure row.
        staging_dir: the dataset's staging area (a local folder or an ``s3://`` prefix).
        reads_s3: the catalogue's images are on S3, so the reader needs a client.
        inputs: the orchestrator's session and shared rate limiters.
        roots: where the reader may read (``catalog.roots_for`` of the run's source); None:
            only the ``allowed_roots`` setting.

    Returns:
        The services.

    Raises:
        ConfigError: settings that cannot work (no such profile, bad model id, prompt file).
    """
    session = inputs.session
    describer, embedder = build_providers(settings, limiters=inputs.limiters, session=session)
    s3 = s3_client(settings, session=session) if reads_s3 else None
    confined = roots if roots is not None else roots_for("", settings.allowed_roots)
    read = partial(read_bytes, s3_client=s3, roots=confined, max_bytes=settings.max_image_bytes)
    retries = RetryBudget.from_settings(settings)
    executor = ChunkEnricher(
        describer=describer,
        embedder=embedder,
        read=read,
        run_id=run_id,
        transient_retries=retries.transient_retries,
        retry_delay_s=retries.pass_delay_s,
        threads=image_threads(describer, embedder),
    )
    options = aws_storage_options(session) if session is not None and is_remote(staging_dir) else {}
    return RunServices(
        describer=describer, embedder=embedder, read=read, executor=executor, retries=retries, s3=s3,
        storage_options=options, session=session,
    )


def open_dataset(settings: Settings, services: RunServices) -> Dataset:
    """The run's dataset, written with the identity of the run's clients.

    The injected session's credentials when there is one; otherwise, for an ``s3://`` dataset,
    the run's region (delta-rs would not see ``MEDIA_ENRICH_AWS_REGION`` or a profile's region),
    and credentials from the standard chain.

    Args:
        settings: the run's settings (``dataset``, region and profile).
        services: the run's services.

    Returns:
        The dataset handle.
    """
    if services.storage_options:
        return Dataset(settings.dataset, storage_options=services.storage_options)
    if is_remote(settings.dataset):
        region = resolve_region(settings.aws_region, profile=settings.aws_profile)
        return Dataset(settings.dataset, storage_options=aws_storage_options(None, region=region))
    return Dataset(settings.dataset)
