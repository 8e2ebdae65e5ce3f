"""Bedrock batch inference on the test server: ``CreateModelInvocationJob`` and its siblings.

The control plane's four batch operations, on the paths of botocore's ``bedrock`` service model
(2023-04-20, rest-json), so a real boto3 ``bedrock`` client reaches them through
``AWS_ENDPOINT_URL_BEDROCK``:

* ``POST /model-invocation-job``: CreateModelInvocationJob (``{"jobArn"}``);
* ``GET /model-invocation-job/{jobIdentifier}``: GetModelInvocationJob (id or ARN);
* ``GET /model-invocation-jobs``: ListModelInvocationJobs (``statusEquals``, ``nameContains``,
  ``maxResults``/``nextToken``, ``sortOrder``, ``submitTimeAfter``/``submitTimeBefore``);
* ``POST /model-invocation-job/{jobIdentifier}/stop``: StopModelInvocationJob.

Creation is checked as the service checks it (the service model's patterns and bounds:
``jobName`` 1..63 of ``[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\\+\\-\\.]){0,63}``, an IAM role ARN,
``timeoutDurationInHours`` 24..168, ``s3://`` URIs, a known model) and is idempotent on
``clientRequestToken``: the same token answers the same ``jobArn``, and no second job is made.
A job's id is the last part of its ARN, 12 characters of ``[a-z0-9]``.

A job then moves through ``Submitted``, ``Validating``, ``Scheduled`` and ``InProgress`` to
``Completed`` (or ``PartiallyCompleted``, ``Failed``, ``Expired``, or ``Stopping``/``Stopped``),
``BatchPlan.state_seconds`` per state, in a background thread. Validating reads the ``.jsonl``
files under the input URI with a boto3 S3 client (the server's, or one built from the server
process's environment, e.g. ``AWS_ENDPOINT_URL_S3``) and fails the job on malformed lines or
exceeded quotas (records per file, per job, bytes per file, per job; fewer than the minimum
records when ``refuse_small_at="validation"``). InProgress answers each record with the same
validation and answer functions ``InvokeModel`` uses (``claude``, ``titan``, ``nova``), without
the on-demand fault plan or latency, so a record's ``modelOutput`` equals the on-demand answer
for the same body (up to the random message and tool-use ids). A record the runtime would refuse
gets ``error: {errorCode: 400, errorMessage}``. Output, as Bedrock writes it:
``<output URI>/<job id>/<input file path relative to the input URI>.out`` per input file (records
in shuffled order: the service does not keep the input order) and
``<output URI>/<job id>/manifest.json.out`` with the record and token counts.

Faults come from a ``BatchPlan``, server-wide (``BatchJobs.plan``), for the next created jobs
(``BatchJobs.queue_plan``) or by job name (``BatchJobs.plans_by_name``): a per-record error rate,
an outcome (``PartiallyCompleted``: only part of the records processed; ``Failed`` at
validation; ``Expired``: never leaves ``Scheduled``), the quotas, where a job below the minimum
is refused (``ValidationException`` at creation, or ``Failed`` at validation), and throttled
control-plane calls (the next N creates / gets answer 429 ``ThrottlingException``).

Facts whose exact wording or behaviour could not be checked against the documentation are
marked "not verified" where they are modelled.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from botocore.exceptions import BotoCoreError, ClientError

from media_enrichment.testing.claude import handle_claude
from media_enrichment.testing.errors import ServiceError, access_denied, validation
from media_enrichment.testing.faults import FaultPlan
from media_enrichment.testing.models import base_model, family
from media_enrichment.testing.nova import handle_nova
from media_enrichment.testing.titan import handle_titan

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

logger = logging.getLogger(__name__)

__all__ = [
    "ACCOUNT_ID",
    "ACTIVE_STATES",
    "BELOW_MINIMUM_MESSAGE",
    "TERMINAL_STATES",
    "BatchJob",
    "BatchJobs",
    "BatchPlan",
    "route",
]

ACCOUNT_ID = "123456789012"
#: States in the order a job passes them (then one terminal state).
_PROGRESSION = ("Submitted", "Validating", "Scheduled", "InProgress")
TERMINAL_STATES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
ACTIVE_STATES = frozenset({*_PROGRESSION, "Stopping"})
_ALL_STATES = TERMINAL_STATES | ACTIVE_STATES

# Patterns and bounds of botocore's bedrock service model (2023-04-20).
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
_S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")
_JOB_IDENTIFIER = re.compile(r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})")
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_RECORD_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

#: The refusal of a job below the per-model minimum. The service names this quota "Minimum number
#: of records per batch inference job"; the exact message is not verified.
BELOW_MINIMUM_MESSAGE = (
    "The number of records in the input ({count}) is less than the minimum number of records per batch "
    "inference job ({minimum}) for model {model_id}."
)

_ROUTES = (
    ("POST", re.compile(r"^/model-invocation-job$"), "create"),
    ("GET", re.compile(r"^/model-invocation-jobs$"), "list"),
    ("POST", re.compile(r"^/model-invocation-job/(?P<job>[^/]+)/stop$"), "stop"),
    ("GET", re.compile(r"^/model-invocation-job/(?P<job>[^/]+)$"), "get"),
)


@dataclass(frozen=True)
class BatchPlan:
    """How the test server runs batch jobs: timing, quotas and injected faults.

    Attributes:
        seed: seeds the shuffled output order and the per-record error draw (job ids are random).
        state_seconds: seconds spent in each of Submitted, Validating, Scheduled (and Stopping).
        in_progress_seconds: least time spent in InProgress (answering the records may take longer).
        record_error_rate: share of records answered with an injected error instead of an answer
            (drawn per record id, so a resubmission errs on the same records).
        record_error_code, record_error_message: that error's ``errorCode`` / ``errorMessage``.
        outcome: ``None`` (Completed), ``PartiallyCompleted`` (only ``partial_share`` of the
            records are processed; the rest are absent from the output), ``Failed`` (at
            validation, with ``failure_message``) or ``Expired`` (never leaves Scheduled).
        partial_share: share of records processed in a PartiallyCompleted job.
        failure_message: the message of an injected ``Failed``.
        min_records: the per-model minimum records per job.
        refuse_small_at: ``create`` (``ValidationException`` from CreateModelInvocationJob, the
            input is counted then) or ``validation`` (the job goes ``Failed``).
        max_records_per_file, max_records_per_job, max_file_bytes, max_job_bytes: quotas checked
            at validation (the job goes ``Failed``).
        throttle_creates, throttle_gets: the next so many CreateModelInvocationJob /
            GetModelInvocationJob calls answer 429 ``ThrottlingException`` (server-wide plan only).
    """

    seed: int = 0
    state_seconds: float = 0.05
    in_progress_seconds: float = 0.05
    record_error_rate: float = 0.0
    record_error_code: int = 500
    record_error_message: str = "The server encountered an internal error while processing the request."
    outcome: str | None = None
    partial_share: float = 0.5
    failure_message: str = "Internal error: the batch inference job failed. Retry the job."
    min_records: int = 100
    refuse_small_at: str = "create"
    max_records_per_file: int = 50_000
    max_records_per_job: int = 50_000
    max_file_bytes: int = 1024**3
    max_job_bytes: int = 5 * 1024**3
    throttle_creates: int = 0
    throttle_gets: int = 0

    def __post_init__(self) -> None:
        if self.outcome not in (None, "PartiallyCompleted", "Failed", "Expired"):
            raise ValueError(f"outcome must be None, PartiallyCompleted, Failed or Expired, not {self.outcome!r}")
        if self.refuse_small_at not in ("create", "validation"):
            raise ValueError("refuse_small_at must be 'create' or 'validation'")
        if not 0.0 <= self.record_error_rate <= 1.0 or not 0.0 <= self.partial_share <= 1.0:
            raise ValueError("record_error_rate and partial_share must be within 0..1")
        if not 0 <= self.state_seconds <= 60 or not 0 <= self.in_progress_seconds <= 60:
            raise ValueError("state_seconds and in_progress_seconds must be within 0..60")


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


class _RecordServer:
    """What a model handler needs of a server, for one batch record: the server's image facts,
    and no fault, latency or stall (a batch record is not an on-demand request)."""

    def __init__(self, server: BedrockServer):
        self.facts = server.facts
        self.faults = FaultPlan()

    def draw_fault(self, family: str, *, followup: bool = False, images: tuple[Any, ...] = ()) -> None:
        return None

    def deliver(self, fault: Any, answer: Any, headers: dict[str, str], usage: tuple[int, int], rec: dict[str, Any]):
        return 200, answer, headers, usage


_HANDLERS: dict[str, Callable[..., Any]] = {"anthropic": handle_claude, "titan": handle_titan, "nova": handle_nova}


class BatchJobs:
    """The batch jobs of one ``BedrockServer``; thread-safe.

    Attributes:
        plan: the server-wide ``BatchPlan`` (may be replaced between calls).
        plans_by_name: job name -> the plan for a job created with that name.
        jobs: job id -> ``BatchJob``, every job created.
        requests: calls per operation (``create``, ``get``, ``list``, ``stop``), throttled ones included.
    """

    def __init__(self, server: BedrockServer, *, plan: BatchPlan | None = None, s3_client: Any = None):
        self.server = server
        self.plan = plan or BatchPlan()
        self.plans_by_name: dict[str, BatchPlan] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.requests: dict[str, int] = {"create": 0, "get": 0, "list": 0, "stop": 0}
        self._next_plans: deque[BatchPlan] = deque()
        self._by_token: dict[str, str] = {}
        self._s3 = s3_client
        self._lock = threading.RLock()
        self._rng = random.Random()  # job ids differ between servers sharing one S3
        self._throttled = {"create": 0, "get": 0}
        self._threads: list[threading.Thread] = []

    # -- test controls -----------------------------------------------------------------------

    def queue_plan(self, plan: BatchPlan) -> None:
        """Use ``plan`` for the next job created (plans queue up, one per job)."""
        with self._lock:
            self._next_plans.append(plan)

    def job(self, identifier: str) -> BatchJob:
        """The job with this id or ARN (``KeyError`` if none)."""
        return self.jobs[identifier.rsplit("/", 1)[-1]]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every job's thread has ended; whether they all did in time."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    @property
    def s3(self) -> Any:
        """The S3 client jobs read and write with (built on first use from the environment)."""
        with self._lock:
            if self._s3 is None:
                import boto3

                self._s3 = boto3.session.Session().client("s3")
            return self._s3

    # -- operations --------------------------------------------------------------------------

    def handle(self, operation: str, *, job: str | None, query: Mapping[str, list[str]], body: bytes) -> dict[str, Any]:
        """Answer one batch operation (called from ``route``).

        Raises:
            ServiceError: as the service answers (400 validation, 404 not found, 429 throttled, 409-like conflicts).
        """
        with self._lock:
            self.requests[operation] += 1
        if operation == "create":
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise validation("Malformed request body") from None
            if not isinstance(request, dict):
                raise validation("Malformed request body")
            return self.create(request)
        if operation == "get":
            return self.get(job or "")
        if operation == "stop":
            return self.stop(job or "")
        return self.list(query)

    def _throttle(self, operation: str) -> None:
        budget = self.plan.throttle_creates if operation == "create" else self.plan.throttle_gets
        with self._lock:
            if self._throttled[operation] < budget:
                self._throttled[operation] += 1
                raise ServiceError(429, "ThrottlingException", "Too many requests, please wait before trying again.", "throttled")

    def reset_throttling(self) -> None:
        """Start counting ``throttle_creates`` / ``throttle_gets`` again from zero."""
        with self._lock:
            self._throttled = {"create": 0, "get": 0}

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """CreateModelInvocationJob: check the request, return the token's job or start a new one."""
        self._throttle("create")
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
        model_id = request["modelId"]
        self._check_model(model_id)

        with self._lock:
            if token is not None and token in self._by_token:
                # Idempotent: the same token is the same request (the service ignores the repeat
                # without an error), whatever else it carries.
                return {"jobArn": self.jobs[self._by_token[token]].job_arn}
            for existing in self.jobs.values():
                if existing.job_name == name:
                    # Not verified: the service refuses a second job of the same name.
                    raise ServiceError(400, "ConflictException", f"A job with the name {name} already exists.", "conflict")
            plan = self.plans_by_name.get(name) or (self._next_plans.popleft() if self._next_plans else self.plan)
            if plan.refuse_small_at == "create" and plan.min_records > 0:
                count = self._count_records(input_uri)
                if count < plan.min_records:
                    raise validation(BELOW_MINIMUM_MESSAGE.format(count=count, minimum=plan.min_records, model_id=model_id))
            job_id = self._new_id()
            now = time.time()
            job = BatchJob(
                job_id=job_id,
                job_arn=f"arn:aws:bedrock:{self.server.region}:{ACCOUNT_ID}:model-invocation-job/{job_id}",
                job_name=name,
                model_id=model_id,
                role_arn=request["roleArn"],
                client_request_token=token or job_id,
                input_uri=input_uri,
                output_uri=output_uri,
                timeout_hours=timeout,
                invocation_type=invocation_type,
                plan=plan,
                submit_time=now,
                last_modified=now,
                tags=list(request.get("tags") or []),
            )
            self.jobs[job_id] = job
            if token is not None:
                self._by_token[token] = job_id
            thread = threading.Thread(target=self._run, args=(job,), name=f"batch-job-{job_id}", daemon=True)
            self._threads.append(thread)
        thread.start()
        return {"jobArn": job.job_arn}

    def get(self, identifier: str) -> dict[str, Any]:
        """GetModelInvocationJob by id or ARN."""
        self._throttle("get")
        job = self._find(identifier)
        with self._lock:
            return job.describe()

    def list(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        """ListModelInvocationJobs with its filters and pagination."""

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        status = one("statusEquals")
        if status is not None and status not in _ALL_STATES:
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
        with self._lock:
            jobs = [
                j
                for j in self.jobs.values()
                if (status is None or j.status == status)
                and (contains is None or contains in j.job_name)
                and (after is None or j.submit_time > after)
                and (before is None or j.submit_time < before)
            ]
            jobs.sort(key=lambda j: j.submit_time, reverse=one("sortOrder") != "Ascending")
            page = [j.describe() for j in jobs[start : start + max_results]]
        out: dict[str, Any] = {"invocationJobSummaries": page}
        if start + max_results < len(jobs):
            out["nextToken"] = str(start + max_results)
        return out

    def stop(self, identifier: str) -> dict[str, Any]:
        """StopModelInvocationJob: an active job goes Stopping, then Stopped."""
        job = self._find(identifier)
        with self._lock:
            if job.status in TERMINAL_STATES or job.status == "Stopping":
                # Not verified: the wording of the refusal to stop a finished job.
                raise validation(f"The job {job.job_arn} cannot be stopped in state {job.status}.")
            job.stop_requested.set()
            self._set(job, "Stopping")
        return {}

    # -- the job's life ----------------------------------------------------------------------

    def _run(self, job: BatchJob) -> None:
        plan = job.plan
        try:
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            self._set(job, "Validating")
            files = self._validate(job)
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            if files is None:
                return
            self._set(job, "Scheduled")
            if plan.outcome == "Expired":  # never started within its timeout (scaled to state_seconds)
                if self._pause(job, plan.state_seconds):
                    return self._stopped(job)
                return self._finish(job, "Expired", "The job was scheduled but did not start before its timeout.")
            if self._pause(job, plan.state_seconds):
                return self._stopped(job)
            self._set(job, "InProgress")
            started = time.monotonic()
            partial = self._process(job, files)
            if job.stop_requested.is_set():
                return self._stopped(job)
            remaining = plan.in_progress_seconds - (time.monotonic() - started)
            if remaining > 0 and self._pause(job, remaining):
                return self._stopped(job)
            if partial:
                self._finish(job, "PartiallyCompleted", "Not all of the records could be processed in time.")
            else:
                self._finish(job, "Completed", None)
        except Exception as exc:  # a bug of the fake, or S3 gone: the job fails, the server lives on
            logger.exception("batch job %s failed in the test server", job.job_id)
            self._finish(job, "Failed", f"Internal error: {type(exc).__name__}: {exc}")

    def _pause(self, job: BatchJob, seconds: float) -> bool:
        """Wait ``seconds``; whether the job was asked to stop (or the server stopped)."""
        deadline = time.monotonic() + seconds
        while True:
            if job.stop_requested.is_set() or self.server.stopping:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            job.stop_requested.wait(min(left, 0.05))

    def _stopped(self, job: BatchJob) -> None:
        if self.server.stopping and not job.stop_requested.is_set():
            return
        self._pause_plain(job.plan.state_seconds)
        self._finish(job, "Stopped", None)

    def _pause_plain(self, seconds: float) -> None:
        if seconds > 0 and not self.server.stopping:
            time.sleep(min(seconds, 5.0))

    def _set(self, job: BatchJob, status: str, message: str | None = None) -> None:
        with self._lock:
            if job.status == "Stopping" and status not in TERMINAL_STATES:
                return  # a stop wins over the job's own progress
            job.status = status
            job.last_modified = time.time()
            if message is not None:
                job.message = message

    def _finish(self, job: BatchJob, status: str, message: str | None) -> None:
        with self._lock:
            self._set(job, status, message)
            job.end_time = job.last_modified

    def _validate(self, job: BatchJob) -> list[tuple[str, str, list[dict[str, Any]]]] | None:
        """Read and check the input: ``[(bucket, key, records)]``, or None after failing the job."""
        plan = job.plan
        if plan.outcome == "Failed":
            self._finish(job, "Failed", plan.failure_message)
            return None
        try:
            objects = self._input_objects(job.input_uri)
        except (BotoCoreError, ClientError) as exc:  # no such bucket, access denied
            self._finish(job, "Failed", f"Unable to access the input data at {job.input_uri}: {exc}")
            return None
        if not objects:
            self._finish(job, "Failed", f"No .jsonl files were found at {job.input_uri}.")
            return None
        files = []
        total = total_bytes = 0
        for bucket, key, size in objects:
            if size > plan.max_file_bytes:
                self._finish(job, "Failed", f"The input file {key} is {size} bytes, more than the quota of {plan.max_file_bytes} bytes per file.")
                return None
            data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            records = []
            for number, line in enumerate(data.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
                    self._finish(job, "Failed", f"Line {number} of {key} is not a JSON object with a modelInput object.")
                    return None
                if record.get("recordId") is None:  # the service adds one
                    record["recordId"] = _record_id(key, number)
                records.append(record)
            if len(records) > plan.max_records_per_file:
                self._finish(job, "Failed", f"The input file {key} has {len(records)} records, more than the quota of {plan.max_records_per_file} records per file.")
                return None
            total += len(records)
            total_bytes += size
            files.append((bucket, key, records))
        if total > plan.max_records_per_job:
            self._finish(job, "Failed", f"The job has {total} records, more than the quota of {plan.max_records_per_job} records per job.")
            return None
        if total_bytes > plan.max_job_bytes:
            self._finish(job, "Failed", f"The job's input is {total_bytes} bytes, more than the quota of {plan.max_job_bytes} bytes per job.")
            return None
        if plan.refuse_small_at == "validation" and total < plan.min_records:
            self._finish(job, "Failed", BELOW_MINIMUM_MESSAGE.format(count=total, minimum=plan.min_records, model_id=job.model_id))
            return None
        with self._lock:
            job.total = total
        return files

    def _process(self, job: BatchJob, files: list[tuple[str, str, list[dict[str, Any]]]]) -> bool:
        """Answer the records and write the output; whether only part of them were processed."""
        plan = job.plan
        total = sum(len(records) for _, _, records in files)
        budget = total if plan.outcome != "PartiallyCompleted" else int(total * plan.partial_share)
        out_bucket, out_prefix = _split(job.output_uri)
        _, in_prefix = _split(job.input_uri)
        base = f"{out_prefix}/{job.job_id}" if out_prefix else job.job_id
        rng = random.Random(f"{plan.seed}:{job.job_id}")
        shim = _RecordServer(self.server)
        done = 0
        for _bucket, key, records in files:
            lines = []
            for record in records:
                if done >= budget or job.stop_requested.is_set() or self.server.stopping:
                    break
                done += 1
                lines.append(self._answer(job, shim, record))
            rng.shuffle(lines)  # the output order is not the input's
            relative = key[len(in_prefix) :].lstrip("/") if in_prefix and key.startswith(in_prefix) else key.rsplit("/", 1)[-1]
            out_key = f"{base}/{relative}.out"
            self.s3.put_object(Bucket=out_bucket, Key=out_key, Body="".join(line + "\n" for line in lines).encode("utf-8"))
            with self._lock:
                job.output_keys.append(out_key)
        manifest = {
            "totalRecordCount": total,
            "processedRecordCount": job.processed,
            "successRecordCount": job.success,
            "errorRecordCount": job.errors,
            "inputTokenCount": job.input_tokens,
            "outputTokenCount": job.output_tokens,
        }
        self.s3.put_object(Bucket=out_bucket, Key=f"{base}/manifest.json.out", Body=json.dumps(manifest).encode("utf-8"))
        return done < total

    def _answer(self, job: BatchJob, shim: _RecordServer, record: dict[str, Any]) -> str:
        """One output line: the record with ``modelOutput`` or ``error``; counts updated."""
        record_id = str(record["recordId"])
        body = record["modelInput"]
        out: dict[str, Any] = {"recordId": record_id, "modelInput": body}
        outcome = "ok"
        usage = (0, 0)
        if _draw(job.plan.seed, record_id) < job.plan.record_error_rate:
            out["error"] = {"errorCode": job.plan.record_error_code, "errorMessage": job.plan.record_error_message}
            outcome = "injected"
        elif job.invocation_type == "Converse":
            message = "This test server answers InvokeModel-type batch jobs only."
            if "toolConfig" in body:
                message = "Tool calling is not supported in batch inference jobs of the Converse invocation type."
            out["error"] = {"errorCode": 400, "errorMessage": message}
            outcome = "error"
        else:
            handler = _HANDLERS[family(base_model(job.model_id)) or "anthropic"]
            try:
                _, answer, _, usage = handler(shim, job.model_id, body, {})
                out["modelOutput"] = answer
            except ServiceError as error:
                out["error"] = {"errorCode": error.status, "errorMessage": error.message}
                outcome = "error"
        with self._lock:
            job.processed += 1
            if outcome == "ok":
                job.success += 1
            else:
                job.errors += 1
            job.input_tokens += usage[0]
            job.output_tokens += usage[1]
            job.record_outcomes[record_id] = outcome
            job.last_modified = time.time()
        return json.dumps(out, separators=(",", ":"))

    # -- helpers -----------------------------------------------------------------------------

    def _check_model(self, model_id: str) -> None:
        server = self.server
        base = base_model(model_id)
        if model_id in server.denied_models or base in server.denied_models:
            raise access_denied("You don't have access to the model with the specified model ID.")
        if base in server.retired_models:
            raise ServiceError(404, "ResourceNotFoundException", "This model version has reached the end of its life.", "end_of_life")
        if base not in server.models or family(base) is None:
            raise ServiceError(404, "ResourceNotFoundException", f"The provided model identifier {model_id} is invalid or not found.", "not_found")
        # Not verified: whether a Claude 4.x batch job needs an inference profile as on-demand
        # calls do; not enforced here.

    def _find(self, identifier: str) -> BatchJob:
        if not _JOB_IDENTIFIER.fullmatch(identifier or ""):
            raise validation(
                f"1 validation error detected: Value '{identifier}' at 'jobIdentifier' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {_JOB_IDENTIFIER.pattern}"
            )
        with self._lock:
            job = self.jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None:
            raise ServiceError(404, "ResourceNotFoundException", f"The specified job {identifier} was not found.", "not_found")
        return job

    def _new_id(self) -> str:
        while True:
            job_id = "".join(self._rng.choice(_ID_CHARS) for _ in range(12))
            if job_id not in self.jobs:
                return job_id

    def _input_objects(self, uri: str) -> list[tuple[str, str, int]]:
        """``(bucket, key, size)`` of the ``.jsonl`` files the input URI names (a file or a prefix)."""
        bucket, prefix = _split(uri)
        if prefix.endswith(".jsonl"):
            head = self.s3.head_object(Bucket=bucket, Key=prefix)
            return [(bucket, prefix, int(head["ContentLength"]))]
        listed = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".jsonl"):
                    listed.append((bucket, obj["Key"], int(obj["Size"])))
        return sorted(listed)

    def _count_records(self, uri: str) -> int:
        try:
            objects = self._input_objects(uri)
        except (BotoCoreError, ClientError):
            return 0
        count = 0
        for bucket, key, _ in objects:
            data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            count += sum(1 for line in data.splitlines() if line.strip())
        return count


def route(app: BedrockServer, method: str, path: str, query: str, read_body: Callable[[], bytes]) -> dict[str, Any] | None:
    """Dispatch a control-plane request to the server's batch jobs.

    Args:
        app: the server.
        method: ``GET`` or ``POST``.
        path: the URL path (not decoded).
        query: the raw query string.
        read_body: reads the request body (called for POST only).

    Returns:
        The answer's JSON, or None when the path is not a batch operation.

    Raises:
        ServiceError: the operation's error answer.
    """
    for verb, pattern, operation in _ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            job = unquote(match.group("job")) if "job" in pattern.groupindex else None
            body = read_body() if method == "POST" else b""
            return app.batch.handle(operation, job=job, query=parse_qs(query), body=body)
    return None


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


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key.rstrip("/")


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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


def _draw(seed: int, record_id: str) -> float:
    """A uniform draw in [0, 1) fixed by the seed and the record id."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _record_id(key: str, number: int) -> str:
    """The 11-character id the service gives a record that has none."""
    digest = hashlib.sha256(f"{key}:{number}".encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(11):
        value, rest = divmod(value, len(_RECORD_ID_CHARS))
        chars.append(_RECORD_ID_CHARS[rest])
    return "".join(chars)

