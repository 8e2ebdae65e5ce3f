"""One batch job as the test server keeps it (``BatchJob``), and the states a job passes.

A job moves through ``Submitted``, ``Validating``, ``Scheduled`` and ``InProgress`` to one
terminal state (``Completed``, ``PartiallyCompleted``, ``Failed``, ``Stopped``, ``Expired``), or
through ``Stopping`` to ``Stopped``; ``BatchJob.move`` and ``BatchJob.end`` change its state (a
stop wins over the job's own progress), ``BatchJob.describe`` writes it as
``GetModelInvocationJob`` does.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from media_enrichment.testing.batch.plan import BatchPlan

__all__ = ["ACCOUNT_ID", "ACTIVE_STATES", "ALL_STATES", "TERMINAL_STATES", "BatchJob"]

ACCOUNT_ID = "123456789012"
#: States in the order a job passes them (then one terminal state).
_PROGRESSION = ("Submitted", "Validating", "Scheduled", "InProgress")
TERMINAL_STATES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
ACTIVE_STATES = frozenset({*_PROGRESSION, "Stopping"})
ALL_STATES = TERMINAL_STATES | ACTIVE_STATES


@dataclass
class BatchJob:
    """One job as the server keeps it (read it in tests; the server updates it under its lock).

    ``record_outcomes`` maps each record id the job processed to ``ok``, ``error`` (the runtime
    refused the body), ``injected`` (``record_error_rate``); records never processed are absent.
    """

    job_id: str
    job_arn: str
    job_name: str
    model_id: str
    role_arn: str
    client_request_token: str
    input_uri: str
    output_uri: str
    timeout_hours: int
    invocation_type: str
    plan: BatchPlan
    submit_time: float
    status: str = "Submitted"
    message: str | None = None
    last_modified: float = 0.0
    end_time: float | None = None
    total: int | None = None
    processed: int = 0
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tags: list[dict[str, str]] = field(default_factory=list)
    record_outcomes: dict[str, str] = field(default_factory=dict)
    output_keys: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        """The job as GetModelInvocationJob / ListModelInvocationJobs write it."""
        out: dict[str, Any] = {
            "jobArn": self.job_arn,
            "jobName": self.job_name,
            "modelId": self.model_id,
            "clientRequestToken": self.client_request_token,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": _iso(self.submit_time),
            "lastModifiedTime": _iso(self.last_modified or self.submit_time),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": self.input_uri, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": self.output_uri}},
            "timeoutDurationInHours": self.timeout_hours,
            "jobExpirationTime": _iso(self.submit_time + self.timeout_hours * 3600),
            "modelInvocationType": self.invocation_type,
        }
        if self.message:
            out["message"] = self.message
        if self.end_time is not None:
            out["endTime"] = _iso(self.end_time)
        if self.total is not None:
            out.update(
                totalRecordCount=self.total,
                processedRecordCount=self.processed,
                successRecordCount=self.success,
                errorRecordCount=self.errors,
            )
        return out

    def move(self, status: str, message: str | None = None) -> None:
        """Go to ``status`` (the caller holds the jobs' lock): a stop wins over the job's own progress."""
        if self.status == "Stopping" and status not in TERMINAL_STATES:
            return
        self.status = status
        self.last_modified = time.time()
        if message is not None:
            self.message = message

    def end(self, status: str, message: str | None) -> None:
        """End in the terminal ``status`` (the caller holds the jobs' lock)."""
        self.move(status, message)
        self.end_time = self.last_modified


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
