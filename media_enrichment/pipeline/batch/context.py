"""What every step of a run's batch part shares: the run's context, and what is known of each item.

``BatchContext`` is the run's settings and services, its ``bedrock`` and S3 clients
(``batch_clients``), its batch location and quotas (``quotas_of``), and the kinds of calls a job
can make for it (``batchable_kinds``: the rest are always on demand), with the helpers the steps
share: record ids computed without reading an image, an image read and prepared for both models
once, failure rows. ``BatchImage`` is one item's answers so far and what is left to do;
``BatchImage.leave`` takes one of its calls away from the jobs.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from media_enrichment.batch.jobs import BatchLocation
from media_enrichment.batch.quotas import BatchQuotas
from media_enrichment.batch.records import DESCRIBE, EMBED, describe_version, embed_version, record_id
from media_enrichment.config import Settings
from media_enrichment.errors import CatalogAccessError, ConfigError, EnrichmentError
from media_enrichment.images import PreparedImage, SourceFacts, prepare_images
from media_enrichment.pipeline.plan import WorkItem, failure_row
from media_enrichment.pipeline.services import RunServices
from media_enrichment.providers.base import Description

__all__ = [
    "BatchContext",
    "BatchImage",
    "ByRecord",
    "OpenChunks",
    "batch_clients",
    "batchable_kinds",
    "quotas_of",
]

_T = TypeVar("_T")


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
class BatchImage:
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

    def leave(self, kind: str, why: str, *, code: str = "BatchBelowMinimum", always: bool = False) -> None:
        """A call the jobs will not make: on demand (``always``, or per ``batch_fallback``), or a failure."""
        self.needed.discard(kind)
        if always:
            self.on_demand_only.add(kind)
        else:
            self.problems[kind] = f"{code}\t{why}"


#: Record id -> the image it is for and its kind (``describe``, ``embed``).
ByRecord = dict[str, tuple[BatchImage, str]]
#: The chunks not staged yet: ``(chunk key, its items)``, in the plan's order.
OpenChunks = list[tuple[str, list[WorkItem]]]


class BatchContext:
    """What the steps of one run's batch part share (a ``BatchExecution`` is one, and runs them).

    Args:
        settings: the run's settings.
        services: the run's services (providers, reader, executor for on-demand fallbacks).
        run_id: the run's id (rows, failure rows, the record's ``run_id``).
        staging_dir: the dataset's staging area.
        bedrock, s3: clients (default: from the run's session).
        sleep: how to wait between polls (tests pass a fast one).
        source: the run's catalogue, kept in the record of its jobs (for ``media-enrich collect``).

    Raises:
        ConfigError: no batch location (``MEDIA_ENRICH_BATCH_S3_URI``).
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

    def record_id_of(self, item: WorkItem, kind: str) -> str:
        """The id of the item's record of this kind, computed without reading any image."""
        provider = self.services.describer if kind == DESCRIBE else self.services.embedder
        version = describe_version(provider) if kind == DESCRIBE else embed_version(provider)
        return record_id(item.image_id, item.content_sha256, kind=kind, model_id=provider.model_id, version=version)

    def prepare(self, data: bytes, item: WorkItem) -> tuple[SourceFacts, list[PreparedImage]]:
        """The image's facts, and the image prepared for the describer and for the embedder (in that order)."""
        services = self.services
        return prepare_images(
            data, [services.describer.image_limits, services.embedder.image_limits], content_sha256=item.content_sha256
        )

    def read_image(self, image: BatchImage, use: Callable[[bytes], _T]) -> _T | None:
        """``use`` (its stage is ``prepare``) of the item's image read from the catalogue; None: a read
        or prepare error, now the image's ``failure`` row (as on demand)."""
        item = image.item
        stage = "read"
        try:
            data = self.services.read(item.source_uri)
            stage = "prepare"
            return use(data)
        except CatalogAccessError:
            raise
        except EnrichmentError as exc:
            image.failure = self.failure(item, stage=stage, error=exc)
            return None

    def failure(self, item: WorkItem, *, stage: str, error: BaseException, attempts: int = 1) -> dict[str, Any]:
        """The item's failure row of this run."""
        return failure_row(
            image_id=item.image_id, source_uri=item.source_uri, stage=stage, error=error, run_id=self.run_id,
            attempts=attempts, content_sha256=item.content_sha256,
        )
