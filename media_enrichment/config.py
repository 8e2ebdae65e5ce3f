"""Settings for a run: one env prefix (``MEDIA_ENRICH_``), every field described and bounded.

Settings are built once per run (in the flow or the CLI) and handed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["local", "bedrock"]
TaskRunnerName = Literal["threads", "dask"]
EmbeddingDim = Literal[256, 384, 1024]


class Settings(BaseSettings):
    """Everything a run needs to know. Environment variables: ``MEDIA_ENRICH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MEDIA_ENRICH_", extra="forbid")

    provider: ProviderName = Field(
        "local", description="Which models describe and embed: 'local' (offline) or 'bedrock'."
    )
    dataset: str = Field(
        "data/dataset",
        description="Dataset root: holds the Delta tables 'assets' and 'failures' and the staging area.",
    )
    chunk_size: int = Field(16, ge=1, le=10_000, description="Images per Prefect task run.")
    concurrency: int = Field(4, ge=1, le=256, description="Chunk tasks running at once.")
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
    embedding_dim: EmbeddingDim = Field(1024, description="Vector length: 256, 384 or 1024.")
    limit: int | None = Field(None, ge=1, description="Enrich at most this many catalogue rows.")
    force: bool = Field(False, description="Enrich every row again, even if already in the dataset.")
    batch: str | None = Field(
        None, max_length=200, description="Batch label stored on each row (default: the source's name)."
    )

    max_failure_attempts: int = Field(
        3, ge=1, le=100, description="Tries (over runs) before a failing image is left alone until its bytes change."
    )
    retry_failures: bool = Field(False, description="Try every failed image again, whatever its attempts.")
    transient_retries: int = Field(
        2, ge=0, le=10, description="Extra passes within a chunk for images that hit transient provider errors."
    )
    retry_delay_s: float = Field(1.0, ge=0, le=300, description="Base delay before such a pass (doubles, jittered).")

    describer_model_id: str = Field(
        "anthropic.claude-3-haiku-20240307-v1:0",
        description="Bedrock model id or inference profile id (e.g. 'us.anthropic...') for descriptions.",
    )
    embedder_model_id: str = Field(
        "amazon.titan-embed-image-v1", description="Bedrock model id for multimodal embeddings."
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
    aws_region: str | None = Field(None, description="AWS region (default: boto3's own chain).")
    aws_profile: str | None = Field(None, description="AWS named profile (default: boto3's own chain).")
    bedrock_retry_mode: Literal["legacy", "standard", "adaptive"] = Field(
        "standard", description="botocore retry mode for Bedrock calls."
    )
    bedrock_max_attempts: int = Field(4, ge=1, le=20, description="botocore attempts per request.")
    bedrock_connect_timeout: float = Field(5.0, gt=0, le=120, description="Seconds to connect.")
    bedrock_read_timeout: float = Field(120.0, gt=0, le=900, description="Seconds to wait for an answer.")

    @model_validator(mode="after")
    def _limits_shared_on_dask(self) -> Settings:
        # Token buckets live in one process: N Dask workers would each allow the whole rate.
        limited = any(v is not None for v in (self.describer_rpm, self.describer_tpm, self.embedder_rpm))
        if self.task_runner == "dask" and self.provider == "bedrock" and limited and not self.shared_rate_limits:
            raise ValueError(
                "rpm/tpm limits on Dask must be shared between worker processes: set "
                "MEDIA_ENRICH_SHARED_RATE_LIMITS=true (Prefect global concurrency limits)"
            )
        return self

    @field_validator("dataset")
    @classmethod
    def _dataset_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("dataset must not be empty")
        return value.rstrip("/")
