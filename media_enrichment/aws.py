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
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.useragent import UserAgentString
from botocore.exceptions import NoRegionError, ProfileNotFound

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError

logger = logging.getLogger(__name__)

USER_AGENT_EXTRA = "media-enrichment/0.1"

__all__ = [
    "bedrock_client_config", "bedrock_control_client", "fixed_user_agent", "bedrock_runtime_client", "make_session", "pool_size",
    "resolve_region", "s3_client", "storage_options",
]


def resolve_region(setting: str | None = None, *, configured: str | None = None, profile: str | None = None) -> str | None:
    """The AWS region of a run's clients: the one place the order is decided.

    The first set of: ``MEDIA_ENRICH_AWS_REGION`` (``setting``); the region saved in the run's
    prefect-aws ``AwsCredentials`` block (``configured``); ``AWS_REGION`` (what most AWS SDKs,
    the AWS CLI, Lambda and ECS set, and boto3 does not read); then boto3's own chain,
    ``AWS_DEFAULT_REGION`` and the profile's ``region``. The Bedrock runtime client, the S3
    catalogue client, the delta-rs storage options and the names of shared rate limits all
    take their region from here.

    Args:
        setting: ``Settings.aws_region``.
        configured: a region configured for the session, e.g. an ``AwsCredentials`` block's
            ``region_name``.
        profile: the named profile whose ``region`` is the last resort (``None``: the default
            profile or ``AWS_PROFILE``).

    Returns:
        The region, or None when nothing sets one.

    Raises:
        ConfigError: the profile does not exist.
    """
    for value in (setting, configured, os.environ.get("AWS_REGION")):
        if value and value.strip():
            return value.strip()
    try:
        return boto3.Session(profile_name=profile or None).region_name
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} was not found in the shared config files") from None


def make_session(*, profile: str | None, region: str | None) -> boto3.Session:
    """Create a boto3 session from the standard credential chain.

    Args:
        profile: a named profile from the shared config files, or ``None`` for the default chain.
        region: ``Settings.aws_region``; ``None`` resolves it as ``resolve_region`` does
            (``AWS_REGION``, then ``AWS_DEFAULT_REGION`` and the profile's region).

    Returns:
        A new ``boto3.Session`` (not shared with boto3's module-level default session).

    Raises:
        ConfigError: the profile does not exist.
    """
    region = resolve_region(region, profile=profile)
    try:
        return boto3.Session(profile_name=profile or None, region_name=region)
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} was not found in the shared config files") from None


def pool_size(concurrency: int) -> int:
    """Connection pool size of the Bedrock runtime client.

    Args:
        concurrency: the cap of each model's call window (``Settings.concurrency``).

    Returns:
        ``max(10, 2 * concurrency)``: room for both models' windows full at once.
    """
    return max(10, 2 * concurrency)


def fixed_user_agent(retry_mode: str) -> str:
    """botocore's standard ``User-Agent`` for a boto3 client in ``retry_mode``, built once.

    botocore otherwise rebuilds the header from some 30 components twice per request, about
    13 % of a Bedrock call's client CPU (``benchmarks/``). Given as ``Config(user_agent=...)``,
    botocore sends this string, then the session's and the client's extras
    (``Botocore/<version> media-enrichment/<version>``): the same header as its own, less the
    per-request feature ids (``m/...``).

    Args:
        retry_mode: the client's retry mode (botocore names it in the header).

    Returns:
        The header's leading part, e.g. ``Boto3/1.43 md/Botocore#1.43 ua/2.1 os/linux#... lang/python#3.11 ... cfg/retry-mode#standard``.
    """
    agent = UserAgentString.from_environment().set_session_config(
        session_user_agent_name="Boto3", session_user_agent_version=boto3.__version__, session_user_agent_extra=None
    )
    return agent.with_client_config(Config(retries={"mode": retry_mode})).to_string()


def bedrock_client_config(settings: Settings) -> Config:
    """The botocore ``Config`` used for Bedrock runtime calls.

    Args:
        settings: the run's settings (retry mode and attempts, timeouts, concurrency).

    Returns:
        A ``Config`` with retries, timeouts, a pool sized to the concurrency and the
        ``User-Agent`` built once (``fixed_user_agent``).
    """
    return Config(
        retries={"mode": settings.bedrock_retry_mode, "total_max_attempts": settings.bedrock_max_attempts},
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=settings.bedrock_read_timeout,
        max_pool_connections=pool_size(settings.concurrency),
        user_agent=fixed_user_agent(settings.bedrock_retry_mode),
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


def bedrock_control_client(session: boto3.Session, *, settings: Settings) -> Any:
    """A ``bedrock`` (control plane) client from the run's session, for metadata look-ups such as
    ``GetFoundationModel``; never on the path of an image.

    Its endpoint comes from boto3's configuration too (``AWS_ENDPOINT_URL_BEDROCK``). One
    attempt and short timeouts: a look-up that fails is skipped, not retried.

    Args:
        session: the session the ``bedrock-runtime`` client was made from.
        settings: the run's settings (timeouts).

    Returns:
        A botocore ``Bedrock`` client.

    Raises:
        ConfigError: no region could be resolved.
    """
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=min(settings.bedrock_connect_timeout, 5.0),
        read_timeout=min(settings.bedrock_read_timeout, 10.0),
        user_agent_extra=USER_AGENT_EXTRA,
    )
    try:
        return session.client("bedrock", config=config)
    except NoRegionError:
        raise ConfigError(
            "no AWS region for Bedrock: set MEDIA_ENRICH_AWS_REGION, AWS_REGION or a profile region"
        ) from None


def s3_client(settings: Settings, *, session: boto3.Session | None = None) -> Any:
    """An S3 client from the run's session (endpoint from boto3's configuration, e.g.
    ``AWS_ENDPOINT_URL_S3``)."""
    session = session or make_session(profile=settings.aws_profile, region=settings.aws_region)
    return session.client("s3")


def storage_options(session: boto3.Session | None, *, region: str | None = None) -> dict[str, str]:
    """Credentials and region of a session as delta-rs and ``storage`` take them, so that an
    ``s3://`` dataset is written with the same identity as the run's boto3 clients.

    For no session, only ``region`` (from ``resolve_region``, which delta-rs would not find
    itself in ``MEDIA_ENRICH_AWS_REGION`` or a profile): delta-rs and pyarrow then take the
    credentials from the standard AWS environment and profile chain themselves. The values are
    secrets: hand them to the writers, never log them. They are a snapshot: temporary
    credentials of the session that expire during a run are not refreshed for these writers.
    """
    if session is None:
        return {"AWS_REGION": region} if region else {}
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
