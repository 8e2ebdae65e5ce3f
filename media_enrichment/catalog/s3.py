"""S3 URIs of a catalogue, and the S3 errors no retry can fix.

``is_s3`` and ``split_s3`` read ``s3://bucket/key`` URIs; ``access_error`` turns a boto3 error
that stops the whole run (access denied, bad or expired credentials, no such bucket, no
credentials at all) into one ``CatalogAccessError`` line naming the bucket and the fix.
"""

from __future__ import annotations

from media_enrichment.errors import CatalogAccessError, CatalogError

__all__ = ["access_error", "is_s3", "split_s3"]


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise CatalogError(f"not an S3 URI: {uri!r}")
    return bucket, key


#: S3 error codes no retry can fix, and what to check. A single missing object (NoSuchKey,
#: 404) is not among them: it is that image's failure.
_ACCESS_CODES = {
    "AccessDenied": "access denied", "AllAccessDisabled": "access denied", "403": "access denied",
    "Forbidden": "access denied", "InvalidAccessKeyId": "credentials refused",
    "SignatureDoesNotMatch": "credentials refused", "InvalidToken": "credentials refused",
    "ExpiredToken": "credentials expired", "ExpiredTokenException": "credentials expired",
    "TokenRefreshRequired": "credentials expired", "NoSuchBucket": "no such bucket",
}


def access_error(exc: BaseException, uri: str, *, action: str = "reading") -> CatalogAccessError | None:
    """A boto3 error that no retry can fix (access denied, bad or expired credentials, no such
    bucket, no credentials at all) as one line naming the bucket and the fix; None otherwise.

    Args:
        exc: the error boto3 raised.
        uri: what was being read or listed.
        action: "reading" or "listing".

    Returns:
        The error to raise, or None for an error of this object only (NoSuchKey) or a
        transient one.
    """
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
        TokenRetrievalError,
    )

    bucket = uri[len("s3://") :].split("/", 1)[0]
    permission = "s3:ListBucket" if action == "listing" else "s3:GetObject"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, TokenRetrievalError)):
        kind = "no usable credentials"
    elif isinstance(exc, ClientError):
        kind = _ACCESS_CODES.get(str(exc.response.get("Error", {}).get("Code", "")))
        if kind is None:
            return None
    else:
        return None
    if kind == "no such bucket":
        return CatalogAccessError(f"no such bucket {bucket!r} {action} {uri}: check the bucket name, AWS_REGION and the endpoint")
    return CatalogAccessError(
        f"{kind} {action} {uri}: check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID, or the AwsCredentials block) "
        f"and {permission} on bucket {bucket!r}"
    )
