"""AWS credentials from Prefect: a prefect-aws ``AwsCredentials`` block hands out the session.

The block's region has its place in the one order of ``media_enrichment.aws.resolve_region``:
after ``MEDIA_ENRICH_AWS_REGION`` (a run's own setting beats a credentials block shared by many
runs) and before ``AWS_REGION`` (the ambient region of the machine, which a block saved for a
purpose should not depend on).
"""

from __future__ import annotations

from typing import Any

import boto3

from media_enrichment.aws import resolve_region
from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError


def _load_block(name: str) -> Any:
    from prefect_aws import AwsCredentials

    try:
        return AwsCredentials.load(name)
    except ValueError as exc:  # Prefect raises ValueError for a block that does not exist
        raise ConfigError(f"no AwsCredentials block named {name!r}: {exc}") from exc


def _block_region(block: Any, setting: str | None) -> str | None:
    return resolve_region(setting, configured=block.region_name, profile=block.profile_name)


def aws_session_from_block(name: str, *, region: str | None = None) -> boto3.Session:
    """The boto3 session of a saved prefect-aws ``AwsCredentials`` block.

    Args:
        name: the block's name (``prefect block ls``).
        region: ``MEDIA_ENRICH_AWS_REGION`` (``Settings.aws_region``), which beats the block's
            own region; without either, ``AWS_REGION``, then boto3's chain.

    Returns:
        A session with the block's credentials and profile, in the region so resolved.

    Raises:
        ConfigError: no such block.
    """
    block = _load_block(name)
    resolved = _block_region(block, region)
    if resolved != block.region_name:
        block = block.model_copy(update={"region_name": resolved})
    return block.get_boto3_session()


def run_region(settings: Settings) -> str | None:
    """The region a run's AWS clients use, its ``AwsCredentials`` block's region included.

    Args:
        settings: the run's settings.

    Returns:
        The region (see ``media_enrichment.aws.resolve_region``), or None.

    Raises:
        ConfigError: no such block, or no such profile.
    """
    if settings.aws_credentials_block:
        return _block_region(_load_block(settings.aws_credentials_block), settings.aws_region)
    return resolve_region(settings.aws_region, profile=settings.aws_profile)
