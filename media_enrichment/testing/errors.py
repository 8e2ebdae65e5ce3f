"""Error answers of the test server, in the shape Bedrock sends them.

A ``ServiceError`` carries the HTTP status, the error code botocore reads from the
``x-amzn-ErrorType`` header (the part before ``:``; ``ERROR_TYPE_SUFFIX`` is the rest) and the
``{"message": ...}`` body, plus the outcome it is counted under in ``Counters``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ERROR_TYPE_SUFFIX", "ServiceError", "access_denied", "json_object", "unknown_operation", "validation"]

ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


class ServiceError(Exception):
    """An error answer, sent the way Bedrock sends it."""

    def __init__(self, status: int, code: str, message: str, outcome: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome

    def with_outcome(self, outcome: str) -> ServiceError:
        """The same error, counted under another outcome."""
        self.outcome = outcome
        return self


def validation(message: str) -> ServiceError:
    """400 ``ValidationException``: a request the service refuses."""
    return ServiceError(400, "ValidationException", message, "validation")


def json_object(raw: bytes, *, empty: bytes, malformed: str, not_object: str) -> dict[str, Any]:
    """A request body that must be a JSON object, or the service's 400 for it.

    Args:
        raw: the body as sent.
        empty: what an empty body counts as (``b"{}"`` or ``b"null"``, as the operation does).
        malformed: the message for a body that is not JSON.
        not_object: the message for JSON that is not an object.
    """
    try:
        value = json.loads(raw or empty)
    except ValueError:
        raise validation(malformed) from None
    if not isinstance(value, dict):
        raise validation(not_object)
    return value


def access_denied(message: str) -> ServiceError:
    """403 ``AccessDeniedException``."""
    return ServiceError(403, "AccessDeniedException", message, "access_denied")


def unknown_operation(message: str = "Unknown operation") -> ServiceError:
    """404 ``UnknownOperationException``: a route or operation this server does not serve."""
    return ServiceError(404, "UnknownOperationException", message, "unknown_operation")
