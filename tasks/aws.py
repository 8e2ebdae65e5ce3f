"""AWS credentials from Prefect: a prefect-aws ``AwsCredentials`` block hands out the session."""

from __future__ import annotations

import boto3

from media_enrichment.errors import ConfigError


def aws_session_from_block(name: str) -> boto3.Session:
    """The boto3 session of a saved prefect-aws ``AwsCredentials`` block.

    Args:
        name: the block's name (``prefect block ls``).

    Returns:
        A session with the block's credentials, profile and region.

    Raises:
        ConfigError: no such block.
    """
    from prefect_aws import AwsCredentials

    try:
        block = AwsCredentials.load(name)
    except ValueError as exc:  # Prefect raises ValueError for a block that does not exist
        raise ConfigError(f"no AwsCredentials block named {name!r}: {exc}") from exc
    return block.get_boto3_session()
