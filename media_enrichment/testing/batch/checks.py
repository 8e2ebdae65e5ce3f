"""How the test server's control plane checks a batch request, as the service does.

The patterns and bounds are those of botocore's ``bedrock`` service model (2023-04-20):
``check_create`` checks a CreateModelInvocationJob request (``jobName`` 1..63 of its pattern, an
IAM role ARN, ``clientRequestToken``, ``timeoutDurationInHours`` 24..168, the invocation type,
``s3://`` URIs, the JSONL input format), ``check_list`` a ListModelInvocationJobs query, and
``check_job_identifier`` a job id or ARN. A failed check raises the service's 400
``ValidationException`` (``errors.validation``) with its wording.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from media_enrichment.testing.batch.job import ALL_STATES
from media_enrichment.testing.errors import json_object, validation

__all__ = ["CreateRequest", "ListQuery", "check_create", "check_job_identifier", "check_list", "request_object"]

# Patterns and bounds of botocore's bedrock service model (2023-04-20).
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
_S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")
_JOB_IDENTIFIER = re.compile(r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})")


class CreateRequest(NamedTuple):
    """A checked CreateModelInvocationJob request (``token`` None: none was sent)."""

    name: str
    role_arn: str
    token: str | None
    timeout: int
    invocation_type: str
    input_uri: str
    output_uri: str
    model_id: str


class ListQuery(NamedTuple):
    """A checked ListModelInvocationJobs query (None: no such filter)."""

    status: str | None
    contains: str | None
    after: float | None
    before: float | None
    max_results: int
    start: int
    ascending: bool


def request_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    return json_object(body, empty=b"{}", malformed="Malformed request body", not_object="Malformed request body")


def check_create(request: dict[str, Any]) -> CreateRequest:
    """Check a CreateModelInvocationJob request (the model is the server's to check)."""
    for name in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
        if request.get(name) in (None, ""):
            raise validation(f"1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")
    name = request["jobName"]
    _check_string("jobName", name, pattern=_JOB_NAME, max_len=63)
    _check_string("roleArn", request["roleArn"], pattern=_ROLE_ARN, max_len=2048)
    token = request.get("clientRequestToken")
    if token is not None:
        _check_string("clientRequestToken", token, pattern=_TOKEN, max_len=256)
    timeout = request.get("timeoutDurationInHours", 24)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 24 <= timeout <= 168:
        raise validation(
            f"1 validation error detected: Value '{timeout}' at 'timeoutDurationInHours' failed to satisfy "
            "constraint: Member must have value between 24 and 168"
        )
    invocation_type = request.get("modelInvocationType", "InvokeModel")
    if invocation_type not in ("InvokeModel", "Converse"):
        raise validation(
            f"1 validation error detected: Value '{invocation_type}' at 'modelInvocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [InvokeModel, Converse]"
        )
    input_uri = _s3_uri(request["inputDataConfig"], "inputDataConfig", "s3InputDataConfig")
    fmt = request["inputDataConfig"]["s3InputDataConfig"].get("s3InputFormat", "JSONL")
    if fmt != "JSONL":
        raise validation(f"1 validation error detected: Value '{fmt}' at 's3InputFormat' failed to satisfy constraint: Member must satisfy enum value set: [JSONL]")
    output_uri = _s3_uri(request["outputDataConfig"], "outputDataConfig", "s3OutputDataConfig")
    return CreateRequest(
        name=name, role_arn=request["roleArn"], token=token, timeout=timeout, invocation_type=invocation_type,
        input_uri=input_uri, output_uri=output_uri, model_id=request["modelId"],
    )


def check_list(query: Mapping[str, list[str]]) -> ListQuery:
    """Check a ListModelInvocationJobs query (its filters, ``maxResults`` and ``nextToken``)."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    status = one("statusEquals")
    if status is not None and status not in ALL_STATES:
        raise validation(f"1 validation error detected: Value '{status}' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set")
    contains = one("nameContains")
    after, before = _parse_time(one("submitTimeAfter")), _parse_time(one("submitTimeBefore"))
    try:
        max_results = int(one("maxResults") or 1000)
        start = int(one("nextToken") or 0)
    except ValueError:
        raise validation("Invalid maxResults or nextToken") from None
    if not 1 <= max_results <= 1000:
        raise validation("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000")
    return ListQuery(status, contains, after, before, max_results, start, ascending=one("sortOrder") == "Ascending")


def check_job_identifier(identifier: str) -> None:
    """Check a ``jobIdentifier`` (a job id or ARN)."""
    if not _JOB_IDENTIFIER.fullmatch(identifier or ""):
        raise validation(
            f"1 validation error detected: Value '{identifier}' at 'jobIdentifier' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {_JOB_IDENTIFIER.pattern}"
        )


def _check_string(name: str, value: Any, *, pattern: re.Pattern[str], max_len: int) -> None:
    if not isinstance(value, str):
        raise validation(f"1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a string")
    if len(value) > max_len:
        raise validation(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {max_len}"
        )
    if not pattern.fullmatch(value):
        raise validation(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )


def _s3_uri(config: Any, name: str, member: str) -> str:
    inner = config.get(member) if isinstance(config, dict) else None
    uri = inner.get("s3Uri") if isinstance(inner, dict) else None
    if not isinstance(uri, str):
        raise validation(f"1 validation error detected: Value null at '{name}.{member}.s3Uri' failed to satisfy constraint: Member must not be null")
    _check_string(f"{name}.{member}.s3Uri", uri, pattern=_S3_URI, max_len=1024)
    return uri


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise validation(f"Invalid timestamp {value!r}") from None
