"""Settings for a run: one env prefix (``MEDIA_ENRICH_``), every field described and bounded.

Settings are built once per run (in the flow or the CLI) and handed down; nothing reads the
environment at import time.

Where a value comes from, first found: a value given for the run (a command-line option, a flow
parameter, a deployment's parameter), then the ``MEDIA_ENRICH_<FIELD>`` environment variable of
the process that runs the flow, then the default declared here, the one place defaults live.
``build_settings`` applies that order: callers pass what was given and ``None`` for the rest.
The checks beyond each field's type and bounds (across fields, the allowed roots' text) live in
``config_checks``; ``Settings`` calls them from its validators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from media_enrichment import config_checks as checks
from media_enrichment.config_checks import FieldValueError, split_roots
from media_enrichment.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "BatchFallbackName",
    "EmbeddingDim",
    "FieldValueError",
    "InvocationName",
    "ProviderName",
    "Settings",
    "TaskRunnerName",
    "build_settings",
    "env_name",
    "split_roots",
]

ProviderName = Literal["local", "bedrock"]
TaskRunnerName = Literal["threads", "dask"]
InvocationName = Literal["on-demand", "batch", "auto"]
BatchFallbackName = Literal["on-demand", "fail"]
#: A vector length; which ones are valid depends on the embedder (checked by ``Settings``).
EmbeddingDim = int


ENV_PREFIX = "MEDIA_ENRICH_"


class Settings(BaseSettings):
    """Everything a run needs to know. Environment variables: ``MEDIA_ENRICH_<FIELD>``."""

    # An empty variable (``MEDIA_ENRICH_LIMIT=``) counts as unset: the default applies.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", env_ignore_empty=True)

    provider: ProviderName = Field(
        "local", description="Which models describe and embed: 'local' (offline) or 'bedrock'."
    )
    dataset: str = Field(
        "data/dataset",
        description="Dataset root: holds the Delta tables 'assets' and 'failures' and the staging area.",
    )
    chunk_size: int = Field(64, ge=1, le=10_000, description="Images per Prefect task run (a unit of staging).")
    concurrency: int = Field(
        32,
        ge=1,
        le=256,
        description=(
            "Most calls in flight per model and process. Each model's call window finds how many it needs "
            "(Little's law on the rpm/tpm quota and the measured latency, back-off on throttling) up to this cap."
        ),
    )
    chunk_tasks: int | None = Field(
        None,
        ge=1,
        le=256,
        description=(
            "Chunk tasks running at once (None: enough chunks to keep the call windows full, "
            "ceil(2 x concurrency / chunk_size), at least 2, per process: times dask_workers on a local Dask cluster)."
        ),
    )
    commit_rows: int = Field(
        2_000,
        ge=1,
        le=10_000_000,
        description=(
            "Rows per Delta commit: a run larger than this commits in parts, because delta-rs's writer "
            "needs about 40 KiB a row at its peak with 1024-d vectors (measured), so a commit's size "
            "bounds the run's memory."
        ),
    )
    embedding_dim: EmbeddingDim = Field(
        1024,
        description="Vector length: one of the sizes the chosen embedder makes (checked against its dims).",
    )
    limit: int | None = Field(None, ge=1, description="Enrich at most this many catalogue rows.")
    max_images: int | None = Field(
        None, ge=1, description="Enrich at most this many images in one run; the rest wait for the next run."
    )
    max_cost_usd: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description=(
            "Stop submitting chunks once what the run spent plus what its chunks in flight are expected to cost "
            "(list prices) would pass this many USD; everything finished is committed."
        ),
    )
    force: bool = Field(False, description="Enrich every row again, even if already in the dataset.")
    batch: str | None = Field(
        None, max_length=200, description="Batch label stored on each row (default: the source's name)."
    )
    allowed_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        max_length=100,
        description=(
            "Folders (or s3://bucket/prefix) a manifest's paths may name besides the catalogue's own (a manifest's "
            "folder, a folder, an S3 prefix): a path resolving anywhere else (.., an absolute path, a symlink out, "
            "another bucket) is a failure row, never opened. Variable: comma- or os.pathsep-separated."
        ),
    )
    max_image_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        le=4 * 1024**3,
        description=(
            "Largest image file read, in bytes (64 MiB: a photo at the 90-megapixel decode limit is well under it "
            "as JPEG, PNG or WebP, and 8 reads at once stay within 512 MiB); larger files are failure rows, "
            "checked before reading and while reading."
        ),
    )

    max_failure_attempts: int = Field(
        3, ge=1, le=100, description="Tries (over runs) before a failing image is left alone until its bytes change."
    )
    retry_failures: bool = Field(False, description="Try every failed image again, whatever its attempts.")
    transient_retries: int = Field(
        2, ge=0, le=10, description="Extra passes within a chunk for images that hit transient provider errors."
    )
    retry_delay_s: float = Field(1.0, ge=0, le=300, description="Base delay before such a pass (doubles, jittered).")

    describer_model_id: str | None = Field(
        None,
        max_length=2048,
        description=(
            "Claude model for descriptions: a Bedrock model id, inference profile id ('us.anthropic...', "
            "'global.anthropic...') or ARN, used verbatim. Unset: Claude Haiku 4.5 through the inference profile "
            "of the run's region's geography (us., eu., jp., au.; global. elsewhere)."
        ),
    )
    embedder_model_id: str = Field(
        "amazon.titan-embed-image-v1",
        description="Bedrock multimodal embeddings model: 'amazon.titan-embed-image-v1' (Titan G1) or "
        "'amazon.nova-2-multimodal-embeddings-v1:0' (Amazon Nova Multimodal Embeddings).",
    )
    prompt_file: Path | None = Field(
        None, description="A prompt template of your own (see media_enrichment/prompts/)."
    )
    max_output_tokens: int = Field(1024, ge=64, le=8192, description="Claude's max_tokens per image.")

    price_file: Path | None = Field(
        None, description="JSON price table overriding the defaults in media_enrichment/cost.py."
    )

    describer_rpm: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests per minute allowed to the describer model (None: no cap)."
    )
    describer_tpm: int | None = Field(
        None, ge=1, le=100_000_000, description="Tokens per minute allowed to the describer model (None: no cap)."
    )
    embedder_rpm: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests per minute allowed to the embedding model (None: no cap)."
    )
    adaptive_concurrency: bool = Field(
        True, description="Halve the calls in flight to a model when it throttles, grow them back after."
    )
    shared_rate_limits: bool = Field(
        False,
        description="Enforce the rpm/tpm limits across runs and workers with Prefect global concurrency limits.",
    )
    task_runner: TaskRunnerName = Field(
        "threads",
        description="Where chunk tasks run: 'threads' of the flow's process, or 'dask' worker processes.",
    )
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); none: a local cluster per run."
    )
    dask_workers: int = Field(2, ge=1, le=256, description="Worker processes of the local Dask cluster.")

    aws_credentials_block: str | None = Field(
        None,
        description="Name of a prefect-aws AwsCredentials block to take credentials and region from (flows only).",
    )
    aws_region: str | None = Field(
        None,
        description=(
            "AWS region of every client (Bedrock, S3, delta-rs). Unset: the AwsCredentials block's region, then "
            "AWS_REGION, then AWS_DEFAULT_REGION or the profile's region (media_enrichment.aws.resolve_region)."
        ),
    )
    aws_profile: str | None = Field(None, description="AWS named profile (default: boto3's own chain).")
    bedrock_retry_mode: Literal["legacy", "standard", "adaptive"] = Field(
        "standard", description="botocore retry mode for Bedrock calls."
    )
    bedrock_max_attempts: int = Field(4, ge=1, le=20, description="botocore attempts per request.")
    bedrock_connect_timeout: float = Field(5.0, gt=0, le=120, description="Seconds to connect.")
    bedrock_read_timeout: float = Field(120.0, gt=0, le=900, description="Seconds to wait for an answer.")

    invocation: InvocationName = Field(
        "on-demand",
        description=(
            "How the models are called: 'on-demand' (InvokeModel calls), 'batch' (Bedrock batch inference jobs, "
            "about half the price, results within the job's timeout; what a job cannot do goes on demand), or "
            "'auto' (batch when a model's records reach batch_min_records and batch is set up: bedrock provider, "
            "batch_role_arn, an S3 location; on demand otherwise)."
        ),
    )
    batch_s3_uri: str | None = Field(
        None,
        max_length=1024,
        description=(
            "s3://bucket/prefix for batch job input and output (in the job's region). Unset: <dataset>/_batch/ "
            "for an s3:// dataset; a local dataset needs it."
        ),
    )
    batch_role_arn: str | None = Field(
        None,
        max_length=2048,
        description=(
            "IAM service role Bedrock runs batch jobs as (trusted by bedrock.amazonaws.com; S3 read on the input, "
            "write on the output); the caller needs iam:PassRole on it."
        ),
    )
    batch_min_records: int = Field(
        100, ge=1, le=1_000_000,
        description="The model's quota 'Minimum number of records per batch inference job': fewer go on demand.",
    )
    batch_max_records_per_file: int = Field(
        10_000, ge=1, le=10_000_000, description="Records per batch input file (the model's quota)."
    )
    batch_max_records_per_job: int = Field(
        50_000, ge=1, le=10_000_000,
        description="Records per batch job (the model's quota); also bounds the records a run holds at once.",
    )
    batch_max_bytes_per_file: int = Field(
        1_000_000_000, ge=1, le=10**12, description="Bytes of one batch input file (the model's quota)."
    )
    batch_max_bytes_per_job: int = Field(
        5_000_000_000, ge=1, le=10**13,
        description="Bytes of one batch job's input (the model's quota); also bounds the record bytes held at once.",
    )
    batch_fallback: BatchFallbackName = Field(
        "on-demand",
        description=(
            "What becomes of records a batch job did not answer usably (an error, an unusable answer, missing, "
            "or the job Failed, Stopped or Expired): 'on-demand' calls (with corrective turns), or 'fail' (failure "
            "rows, tried again by the next run)."
        ),
    )
    batch_poll_s: float = Field(
        60.0, gt=0, le=3600, description="Seconds between GetModelInvocationJob calls while following batch jobs."
    )
    batch_timeout_hours: int = Field(
        72, ge=24, le=168,
        description="timeoutDurationInHours of a batch job: unfinished by then it ends PartiallyCompleted or Expired.",
    )

    @model_validator(mode="after")
    def _embedding_dim_fits_the_embedder(self) -> Settings:
        checks.embedding_dim_fits_the_embedder(self)
        return self

    @model_validator(mode="after")
    def _limits_shared_on_dask(self) -> Settings:
        checks.limits_shared_on_dask(self)
        return self

    @model_validator(mode="after")
    def _batch_can_run(self) -> Settings:
        checks.batch_can_run(self)
        return self

    @field_validator("batch_s3_uri")
    @classmethod
    def _batch_uri_is_s3(cls, value: str | None) -> str | None:
        return checks.batch_uri_is_s3(value)

    @property
    def batch_location_uri(self) -> str | None:
        """Where batch jobs' files go: ``batch_s3_uri``, else ``<dataset>/_batch`` for an S3 dataset."""
        if self.batch_s3_uri:
            return self.batch_s3_uri
        return f"{self.dataset}/_batch" if self.dataset.startswith("s3://") else None

    @property
    def chunks_in_flight(self) -> int:
        """Chunk tasks at once: ``chunk_tasks``, or enough queued images to keep both call
        windows of each process full: ``ceil(2 x concurrency / chunk_size)``, at least 2, per
        process (a local Dask cluster has ``dask_workers`` of them, each with its own windows:
        with one chunk each, a worker's windows ran half empty at the end of every chunk)."""
        if self.chunk_tasks is not None:
            return self.chunk_tasks
        per_process = max(2, math.ceil(2 * self.concurrency / self.chunk_size))
        local_dask = self.task_runner == "dask" and not self.dask_address
        return per_process * (self.dask_workers if local_dask else 1)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots_from_text(cls, value: Any) -> Any:
        return checks.roots_from_text(value)

    @field_validator("allowed_roots")
    @classmethod
    def _roots_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return checks.roots_well_formed(value)

    @field_validator("dataset")
    @classmethod
    def _dataset_not_blank(cls, value: str) -> str:
        return checks.dataset_not_blank(value)


def env_name(field: str) -> str:
    """The environment variable of a setting: ``chunk_size`` -> ``MEDIA_ENRICH_CHUNK_SIZE``."""
    return f"{ENV_PREFIX}{field.upper()}"


def build_settings(given: Mapping[str, Any] | None = None, *, name_of: Callable[[str], str] = str) -> Settings:
    """The settings of a run: the values given, then ``MEDIA_ENRICH_*`` variables, then the defaults.

    Args:
        given: values from a command line or from flow parameters, by field name; a ``None``
            value means "not given" and is left to the environment and the defaults.
        name_of: what the caller calls a field in messages (``--chunk-size`` on the command
            line); default: the field's name, as a flow parameter.

    Returns:
        The settings (environment strings coerced to each field's type).

    Raises:
        ConfigError: one line naming each bad value's option, parameter or variable, with the
            value, e.g. ``MEDIA_ENRICH_EMBEDDING_DIM: must be 256, 384 or 1024 ... (got 123)``.
    """
    values = {key: value for key, value in (given or {}).items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = [_error_line(error, given=values, name_of=name_of) for error in exc.errors()]
        raise ConfigError("; ".join(dict.fromkeys(lines))) from exc


def _error_line(error: Mapping[str, Any], *, given: Mapping[str, Any], name_of: Callable[[str], str]) -> str:
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldValueError):
        field, value = cause.field, cause.value
    elif error.get("loc"):
        field, value = str(error["loc"][0]), error.get("input")
    else:
        return message  # a check across fields, which names what to change itself
    if error.get("type") == "extra_forbidden":
        return f"{name_of(field)}: not a setting (see media_enrichment/config.py)"
    where = name_of(field) if field in given else env_name(field)
    return f"{where}: {message} (got {value})"
