"""Submitting, following and stopping batch inference jobs.

``submit_job`` writes a ``JobSpec``'s input files under ``<prefix>/input/<job name>/`` and calls
``CreateModelInvocationJob`` (InvokeModel invocation type: the native Anthropic body with its
forced tool; Bedrock refuses tool calling in Converse-type jobs) with the spec's deterministic
``clientRequestToken``, so a repeated submission returns the first job and never makes a second
one. Bedrock writes the output under ``<prefix>/output/<job name>/<job id>/``. ``follow`` reads
a job's state and counts as a ``JobState``; ``wait`` polls until it is terminal; ``stop_job``
stops it. What is kept of a submitted job (``BatchLocation``, ``SubmittedJob``, and ``BatchRun``,
the JSON record of a run's jobs) is in ``submitted``, re-exported here.

The caller's identity needs ``bedrock:CreateModelInvocationJob``, ``GetModelInvocationJob``,
``ListModelInvocationJobs``, ``StopModelInvocationJob`` and ``iam:PassRole`` on the service role;
the service role (trusted by ``bedrock.amazonaws.com``) needs ``s3:GetObject``, ``s3:ListBucket``
on the input and ``s3:PutObject`` on the output.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from media_enrichment.batch.errors import BatchTooSmallError
from media_enrichment.batch.quotas import (
    MIN_RECORDS,
    POLL_SECONDS,
    TIMEOUT_HOURS,
    check_timeout,
)
from media_enrichment.batch.records import JobSpec
from media_enrichment.batch.submitted import BatchLocation, BatchRun, SubmittedJob
from media_enrichment.providers.bedrock.errors import translate_error
from media_enrichment.providers.bedrock.invoke import region_of

__all__ = [
    "ACTIVE_STATES",
    "READABLE_STATES",
    "TERMINAL_STATES",
    "BatchLocation",
    "BatchRun",
    "JobState",
    "SubmittedJob",
    "follow",
    "stop_job",
    "submit_job",
    "wait",
]

#: Every state of a model invocation job, as ``GetModelInvocationJob`` writes it.
ACTIVE_STATES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
TERMINAL_STATES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
#: Terminal states whose output may hold results (a stopped job keeps what it processed).
READABLE_STATES = frozenset({"Completed", "PartiallyCompleted", "Stopped"})


@dataclass(frozen=True)
class JobState:
    """A job's state as ``GetModelInvocationJob`` reports it.

    Attributes:
        job_arn, job_name, status, message: as reported (``message`` says why a job failed).
        total, processed, success, errors: the record counts, once known (else None).
        submit_time, end_time: as reported (``datetime``, or None).
    """

    job_arn: str
    job_name: str
    status: str
    message: str | None = None
    total: int | None = None
    processed: int | None = None
    success: int | None = None
    errors: int | None = None
    submit_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None

    @property
    def done(self) -> bool:
        """Whether the job has reached a terminal state."""
        return self.status in TERMINAL_STATES

    @property
    def readable(self) -> bool:
        """Whether its output may hold results (Completed, PartiallyCompleted, Stopped)."""
        return self.status in READABLE_STATES

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> JobState:
        return cls(
            job_arn=response["jobArn"],
            job_name=response.get("jobName", ""),
            status=response.get("status", "Submitted"),
            message=response.get("message"),
            total=response.get("totalRecordCount"),
            processed=response.get("processedRecordCount"),
            success=response.get("successRecordCount"),
            errors=response.get("errorRecordCount"),
            submit_time=response.get("submitTime"),
            end_time=response.get("endTime"),
        )


def submit_job(
    bedrock: Any,
    s3: Any,
    spec: JobSpec,
    *,
    location: BatchLocation,
    role_arn: str,
    timeout_hours: int = TIMEOUT_HOURS,
    min_records: int = MIN_RECORDS,
    tags: dict[str, str] | None = None,
) -> SubmittedJob:
    """Write a job's input files and create the job (idempotent: the same spec is the same job).

    Args:
        bedrock: a ``bedrock`` (control plane) client; its region is the job's.
        s3: an S3 client for ``location``.
        spec: the job (from ``split_jobs``).
        location: where input and output go.
        role_arn: the service role Bedrock runs the job as.
        timeout_hours: ``timeoutDurationInHours`` (24..168).
        min_records: the model's minimum records per job; a smaller spec is refused here.
        tags: tags for the job.

    Returns:
        The submitted job (the first job of this spec if it was submitted before).

    Raises:
        BatchTooSmallError: fewer than ``min_records`` records, or Bedrock refused the job for it.
        ConfigError: a timeout out of bounds.
        RetryableProviderError: throttled or unavailable (botocore's retries spent); submitting
            again is safe.
        RejectedRequestError, FatalProviderError: as ``translate_error`` (a bad role, no access).
    """
    check_timeout(timeout_hours)
    if spec.record_count < min_records:
        raise BatchTooSmallError(
            f"a batch job of {spec.model_id} needs at least {min_records} records, this one has {spec.record_count}",
            count=spec.record_count,
            minimum=min_records,
        )
    for number in range(len(spec.files)):
        key = location.input_key(spec.job_name, f"part-{number:05d}.jsonl")
        s3.put_object(Bucket=location.bucket, Key=key, Body=spec.file_bytes(number), ContentType="application/jsonl")
    input_uri = location.uri(location.input_key(spec.job_name))
    output_uri = location.uri(location.output_key(spec.job_name))
    request: dict[str, Any] = {
        "jobName": spec.job_name,
        "roleArn": role_arn,
        "clientRequestToken": spec.client_request_token,
        "modelId": spec.model_id,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
        "timeoutDurationInHours": timeout_hours,
        "modelInvocationType": "InvokeModel",
    }
    if tags:
        request["tags"] = [{"key": k, "value": v} for k, v in sorted(tags.items())]
    try:
        job_arn = bedrock.create_model_invocation_job(**request)["jobArn"]
    except ClientError as exc:
        error = exc.response.get("Error") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
        if code == "ValidationException" and "minimum" in message.lower():
            raise BatchTooSmallError(
                f"Bedrock refused a batch job of {spec.record_count} records for {spec.model_id}: {message}",
                count=spec.record_count,
            ) from exc
        if code == "ConflictException":
            # The name is taken by an earlier submission of the same records whose token the
            # service no longer remembers: that job is this one.
            existing = _job_named(bedrock, spec.job_name)
            if existing is not None:
                job_arn = existing
            else:
                raise translate_error(exc, model_id=spec.model_id, region=region_of(bedrock)) from exc
        else:
            raise translate_error(exc, model_id=spec.model_id, region=region_of(bedrock)) from exc
    except BotoCoreError as exc:
        raise translate_error(exc, model_id=spec.model_id, region=region_of(bedrock)) from exc
    return SubmittedJob(
        job_arn=job_arn,
        job_name=spec.job_name,
        client_request_token=spec.client_request_token,
        model_id=spec.model_id,
        kind=spec.kind,
        input_uri=input_uri,
        output_uri=output_uri,
        records=tuple((r.record_id, r.image_id, r.content_sha256) for r in spec.records),
        submitted_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def _job_named(bedrock: Any, name: str) -> str | None:
    """The ARN of the job called exactly ``name`` (``ListModelInvocationJobs``), if any."""
    response = bedrock.list_model_invocation_jobs(nameContains=name, maxResults=100)
    for summary in response.get("invocationJobSummaries", []):
        if summary.get("jobName") == name:
            return summary["jobArn"]
    return None


def follow(bedrock: Any, job: SubmittedJob | str) -> JobState:
    """The job's current state and counts.

    Args:
        bedrock: a ``bedrock`` client.
        job: the job, or its ARN or id.

    Raises:
        RetryableProviderError: throttled or unavailable (botocore's retries spent).
        RejectedRequestError, FatalProviderError: no such job, no access.
    """
    arn = job.job_arn if isinstance(job, SubmittedJob) else job
    try:
        return JobState.from_response(bedrock.get_model_invocation_job(jobIdentifier=arn))
    except (ClientError, BotoCoreError) as exc:
        raise translate_error(exc, model_id=getattr(job, "model_id", arn), region=region_of(bedrock)) from exc


def wait(
    bedrock: Any,
    job: SubmittedJob | str,
    *,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_state: Callable[[JobState], None] | None = None,
) -> JobState:
    """Follow a job until it is terminal (or ``timeout_seconds`` pass).

    Args:
        bedrock: a ``bedrock`` client.
        job: the job, or its ARN or id.
        poll_seconds: seconds between looks.
        timeout_seconds: give up after this long and return the last state (None: never).
        sleep: how to wait (tests pass a fast one).
        on_state: called with every state read (progress reporting).

    Returns:
        The last state read: terminal unless the timeout passed.
    """
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        state = follow(bedrock, job)
        if on_state is not None:
            on_state(state)
        if state.done or (deadline is not None and time.monotonic() >= deadline):
            return state
        sleep(poll_seconds)


def stop_job(bedrock: Any, job: SubmittedJob | str) -> None:
    """Ask Bedrock to stop a job (it goes ``Stopping``, then ``Stopped``; processed records stay).

    Raises:
        RejectedRequestError: the job is already terminal; others as ``translate_error``.
    """
    arn = job.job_arn if isinstance(job, SubmittedJob) else job
    try:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    except (ClientError, BotoCoreError) as exc:
        raise translate_error(exc, model_id=getattr(job, "model_id", arn), region=region_of(bedrock)) from exc
