"""Errors at the edge: botocore's exceptions become the library's error hierarchy.

``translate_error`` maps a ``ClientError`` or ``BotoCoreError`` to ``RetryableProviderError``,
``RejectedRequestError`` or ``FatalProviderError``: nothing botocore-specific leaves the
provider. ``fix_line`` turns a refusal no request to a model can escape (a retired model, a bare
id that needs an inference profile, refused sampling parameters) into one line naming the fix;
``access_check`` runs a start-up probe and makes a rejected one fatal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from media_enrichment.errors import (
    FatalProviderError,
    InvalidResponseError,
    ProviderError,
    RejectedRequestError,
    RetryableProviderError,
)
from media_enrichment.providers.bedrock.models import DESCRIBER_SETTING, base_model_id, profile_geography, suggestion

__all__ = ["FATAL_CODES", "REJECTED_CODES", "RETRYABLE_CODES", "access_check", "fix_line", "translate_error"]

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelNotReadyException",
        # Per-minute/day quotas: the same request succeeds later.
        "ServiceQuotaExceededException",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
REJECTED_CODES = frozenset({"ValidationException", "ModelErrorException", "SerializationException"})
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "UnauthorizedOperation",
    }
)

_FATAL_HINTS = {
    "AccessDeniedException": "enable access to the model in the Bedrock console and allow "
    "bedrock:InvokeModel on it",
    "ResourceNotFoundException": "check the model id and that the model is offered in this region",
    "UnrecognizedClientException": "the AWS credentials were not recognised",
    "InvalidSignatureException": "the AWS credentials do not match (check the secret key)",
    "ExpiredTokenException": "the AWS session token has expired",
    "ExpiredToken": "the AWS session token has expired",
}


_EOL_MESSAGE = re.compile(r"reached the end of its life|end[- ]of[- ]life", re.IGNORECASE)
_ON_DEMAND_MESSAGE = re.compile(
    r"on-demand throughput isn\S?t supported|inference profile that contains", re.IGNORECASE
)
_SAMPLING_MESSAGE = re.compile(r"temperature`? and `?top_p`? cannot both be specified", re.IGNORECASE)


def translate_error(exc: Exception, *, model_id: str, region: str | None) -> ProviderError:
    """Turn a botocore exception into the library's error hierarchy.

    Args:
        exc: what botocore raised (``ClientError`` or a ``BotoCoreError``).
        model_id: the model the request was for (named in the message).
        region: the client's region (named in the message).

    Returns:
        A ``RetryableProviderError``, ``RejectedRequestError`` or ``FatalProviderError``
        (``code`` is the service's error code or the botocore exception's name). Messages never
        contain credentials. A model id that needs an inference profile (a
        ``ValidationException`` no request to that id escapes) is fatal, not one image's failure.
    """
    where = f"model {model_id!r} in region {region or '?'}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "").strip()
        status = int(meta.get("HTTPStatusCode") or 0)
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        detail = f"{code} (HTTP {status}) from Bedrock for {where}: {message or 'no message'}"
        if code in FATAL_CODES or (status in (401, 403) and code not in RETRYABLE_CODES):
            hint = _FATAL_HINTS.get(code)
            if code == "ResourceNotFoundException" and _EOL_MESSAGE.search(message):
                hint = "the model has reached end of life on Bedrock: choose a current model"
            return FatalProviderError(detail + (f"; {hint}" if hint else ""), code=code)
        if code == "ValidationException" and _ON_DEMAND_MESSAGE.search(message):
            # No request to this id can succeed: it needs an inference profile. Not one image's fault.
            return FatalProviderError(f"{detail}; use an inference profile id or ARN for this model", code=code)
        if code in RETRYABLE_CODES:
            return RetryableProviderError(f"{detail} (after {attempts} attempt(s))", code=code)
        if code in REJECTED_CODES:
            return RejectedRequestError(detail, code=code)
        if status == 429 or status == 408 or status >= 500:
            return RetryableProviderError(f"{detail} (after {attempts} attempt(s))", code=code)
        return RejectedRequestError(detail, code=code)

    name = type(exc).__name__
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return FatalProviderError(
            f"no usable AWS credentials for {where} ({name}): configure the standard chain "
            "(environment, profile or role)",
            code=name,
        )
    if isinstance(exc, (NoRegionError, ProfileNotFound)):
        return FatalProviderError(f"AWS configuration error for {where}: {exc}", code=name)
    if isinstance(exc, ParamValidationError):
        return RejectedRequestError(f"request for {where} failed client-side validation: {exc}", code=name)
    if isinstance(
        exc,
        (ReadTimeoutError, EndpointConnectionError, ConnectionClosedError, BotoConnectionError, HTTPClientError),
    ):
        return RetryableProviderError(f"network error calling {where} ({name}): {exc}", code=name)
    if isinstance(exc, BotoCoreError):
        return RetryableProviderError(f"botocore error calling {where} ({name}): {exc}", code=name)
    return RetryableProviderError(f"unexpected error calling {where} ({name}): {exc}", code=name)


def fix_line(message: str, code: str | None, *, model_id: str, region: str | None) -> str | None:
    """One line naming the fix for a refusal no request to this model can escape.

    Args:
        message: the translated error's message.
        code: its code (``ResourceNotFoundException``, ``ValidationException`` …).
        model_id: the describer's model id.
        region: the run's region.

    Returns:
        E.g. ``model … is not served on demand by its bare id (region us-east-1): use an inference
        profile: set MEDIA_ENRICH_DESCRIBER_MODEL_ID=us.anthropic…``; ``None`` for any other error.
    """
    where = f"region {region or '?'}"
    if code == "ResourceNotFoundException" and _EOL_MESSAGE.search(message):
        return (
            f"model {model_id} has reached end of life on Bedrock ({where}): set {DESCRIBER_SETTING} "
            f"to a current one{suggestion(model_id, region, ' (or unset it for the default)')}"
        )
    if code == "ValidationException" and _ON_DEMAND_MESSAGE.search(message):
        profile = f"{profile_geography(region)}.{base_model_id(model_id) or model_id}"
        return (
            f"model {model_id} is not served on demand by its bare id ({where}): use an inference profile: "
            f"set {DESCRIBER_SETTING}={profile}"
        )
    if code == "ValidationException" and _SAMPLING_MESSAGE.search(message):
        return (
            f"model {model_id} refuses temperature and top_p together ({where}): "
            "send only one of them (the describer's temperature setting)"
        )
    return None


def access_check(call: Callable[[], Any], model_id: str, region: str | None) -> None:
    """Run a start-up probe: any answer proves access; a rejected request is fatal.

    Args:
        call: the probe (one small request to the model).
        model_id: the model probed (named in the message).
        region: the run's region (named in the message).

    Raises:
        FatalProviderError: the probe was rejected, or failed for good (access, credentials).
        RetryableProviderError: throttled or unavailable right now.
    """
    try:
        call()
    except RejectedRequestError as exc:
        raise FatalProviderError(
            f"access check for model {model_id!r} in region {region or '?'} was rejected: {exc}", code=exc.code
        ) from exc
    except InvalidResponseError:
        pass  # the model answered: access works
