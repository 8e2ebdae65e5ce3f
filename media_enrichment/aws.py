"""AWS session and client construction, done once per run and handed down.

Credentials come from boto3's standard chain (environment, shared config / SSO profile,
container or instance role); they are never read, copied or logged here. The endpoint comes
from boto3's own configuration as well: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (or
``AWS_ENDPOINT_URL``, or ``endpoint_url`` in the profile's ``bedrock-runtime`` section) points
the client at any compatible endpoint, which is how the tests reach the loopback server.

Retries: botocore's own retry handler is the primary mechanism (``standard`` mode by default:
exponential backoff with jitter, a client-wide retry quota, throttling and 5xx and connection
errors retried; ``adaptive`` adds client-side rate limiting). ``bedrock_max_attempts`` is the
*total* number of attempts per request, passed as ``total_max_attempts``.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError, ProfileNotFound

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError

logger = logging.getLogger(__name__)

USER_AGENT_EXTRA = "media-enrichment/0.1"

__all__ = ["bedrock_client_config", "bedrock_runtime_client", "make_session", "pool_size"]


def make_session(*, profile: str | None, region: str | None) -> boto3.Session:
    """Create a boto3 session from the standard credential chain.

    Args:
        profile: a named profile from the shared config files, or ``None`` for the default chain.
        region: the AWS region, or ``None`` to let boto3 resolve it (``AWS_REGION``,
            ``AWS_DEFAULT_REGION``, the profile).

    Returns:
        A new ``boto3.Session`` (not shared with boto3's module-level default session).

    Raises:
        ConfigError: the profile does not exist.
    """
    try:
        return boto3.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} was not found in the shared config files") from None


def pool_size(concurrency: int) -> int:
    """Connection pool size for a given task concurrency.

    Args:
        concurrency: chunk tasks running at once.

    Returns:
        ``max(10, 2 * concurrency)``: room for a describe and an embed call per task.
    """
    return max(10, 2 * concurrency)


def bedrock_client_config(settings: Settings) -> Config:
    """The botocore ``Config`` used for Bedrock runtime calls.

    Args:
        settings: the run's settings (retry mode and attempts, timeouts, concurrency).

    Returns:
        A ``Config`` with retries, timeouts and a pool sized to the concurrency.
    """
    return Config(
        retries={"mode": settings.bedrock_retry_mode, "total_max_attempts": settings.bedrock_max_attempts},
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=settings.bedrock_read_timeout,
        max_pool_connections=pool_size(settings.concurrency),
        user_agent_extra=USER_AGENT_EXTRA,
    )


def bedrock_runtime_client(session: boto3.Session, *, settings: Settings) -> Any:
    """Build the one ``bedrock-runtime`` client a run uses (thread-safe; share it).

    The endpoint is left to boto3's configuration (see the module docstring); no
    ``endpoint_url`` is passed here.

    Args:
        session: from ``make_session``.
        settings: the run's settings.

    Returns:
        A botocore ``BedrockRuntime`` client.

    Raises:
        ConfigError: no region could be resolved.
    """
    config = bedrock_client_config(settings)
    try:
        client = session.client("bedrock-runtime", config=config)
    except NoRegionError:
        raise ConfigError(
            "no AWS region for Bedrock: set MEDIA_ENRICH_AWS_REGION, AWS_REGION or a profile region"
        ) from None
    logger.debug(
        "bedrock-runtime client: region=%s endpoint=%s retries=%s/%s pool=%s",
        client.meta.region_name,
        client.meta.endpoint_url,
        settings.bedrock_retry_mode,
        settings.bedrock_max_attempts,
        config.max_pool_connections,
    )
    return client


def s3_client(settings: Settings, *, session: boto3.Session | None = None) -> Any:
    """An S3 client from the run's session (endpoint from boto3's configuration, e.g.
    ``AWS_ENDPOINT_URL_S3``)."""
    session = session or make_session(profile=settings.aws_profile, region=settings.aws_region)
    return session.client("s3")


def storage_options(session: boto3.Session | None) -> dict[str, str]:
    """Credentials and region of a session as delta-rs and ``storage`` take them, so that an
    ``s3://`` dataset is written with the same identity as the run's boto3 clients.

    Empty for no session: delta-rs and pyarrow then use the standard AWS environment and
    profile chain themselves. The values are secrets: hand them to the writers, never log them.
    They are a snapshot: temporary credentials of the session that expire during a run are
    not refreshed for these writers.
    """
    if session is None:
        return {}
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("the AWS session has no credentials")
    frozen = credentials.get_frozen_credentials()
    options = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        options["AWS_SESSION_TOKEN"] = frozen.token
    if session.region_name:
        options["AWS_REGION"] = session.region_name
    return options
