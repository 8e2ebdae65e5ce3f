"""The batch operations of the test server's control plane: ``BatchJobs`` and ``route``.

``route`` dispatches the four operations on botocore's paths to the server's ``BatchJobs``:
CreateModelInvocationJob (checked as the service checks it, ``checks.check_create``, for a known
model; idempotent on ``clientRequestToken``: the same token answers the same ``jobArn`` and no
second job is made), GetModelInvocationJob, ListModelInvocationJobs (filters, pages, order) and
StopModelInvocationJob. A created job gets a random 12-character id, the ``BatchPlan`` meant for
it (by name, queued, or the server's) and a thread that runs it (``lifecycle.JobRunner``).
Throttled control-plane calls come from the server-wide plan (``throttle_creates``,
``throttle_gets``).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from media_enrichment.testing.batch.checks import check_create, check_job_identifier, check_list, request_object
from media_enrichment.testing.batch.files import JobFiles
from media_enrichment.testing.batch.job import ACCOUNT_ID, TERMINAL_STATES, BatchJob
from media_enrichment.testing.batch.lifecycle import JobRunner
from media_enrichment.testing.batch.plan import BELOW_MINIMUM_MESSAGE, BatchPlan
from media_enrichment.testing.errors import ServiceError, access_denied, validation
from media_enrichment.testing.models import base_model, family

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

__all__ = ["BatchJobs", "route"]

_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

_ROUTES = (
    ("POST", re.compile(r"^/model-invocation-job$"), "create"),
    ("GET", re.compile(r"^/model-invocation-jobs$"), "list"),
    ("POST", re.compile(r"^/model-invocation-job/(?P<job>[^/]+)/stop$"), "stop"),
    ("GET", re.compile(r"^/model-invocation-job/(?P<job>[^/]+)$"), "get"),
)


class BatchJobs:
    """The batch jobs of one ``BedrockServer``; thread-safe.

    Attributes:
        plan: the server-wide ``BatchPlan`` (may be replaced between calls).
        plans_by_name: job name -> the plan for a job created with that name.
        jobs: job id -> ``BatchJob``, every job created.
        requests: calls per operation (``create``, ``get``, ``list``, ``stop``), throttled ones included.
        files: the jobs' input and output on S3 (``JobFiles``).
    """

    def __init__(self, server: BedrockServer, *, plan: BatchPlan | None = None, s3_client: Any = None):
        self.server = server
        self.plan = plan or BatchPlan()
        self.plans_by_name: dict[str, BatchPlan] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.requests: dict[str, int] = {"create": 0, "get": 0, "list": 0, "stop": 0}
        self._next_plans: deque[BatchPlan] = deque()
        self._by_token: dict[str, str] = {}
        self._lock = threading.RLock()
        self.files = JobFiles(s3_client, self._lock)
        self._runner = JobRunner(server, self.files, self._lock)
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
        return self.files.client

    def reset_throttling(self) -> None:
        """Start counting ``throttle_creates`` / ``throttle_gets`` again from zero."""
        with self._lock:
            self._throttled = {"create": 0, "get": 0}

    # -- operations --------------------------------------------------------------------------

    def handle(self, operation: str, *, job: str | None, query: Mapping[str, list[str]], body: bytes) -> dict[str, Any]:
        """Answer one batch operation (called from ``route``).

        Raises:
            ServiceError: as the service answers (400 validation, 404 not found, 429 throttled, 409-like conflicts).
        """
        with self._lock:
            self.requests[operation] += 1
        if operation == "create":
            return self.create(request_object(body))
        if operation == "get":
            return self.get(job or "")
        if operation == "stop":
            return self.stop(job or "")
        return self.list(query)

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """CreateModelInvocationJob: check the request, return the token's job or start a new one."""
        self._throttle("create")
        name, role_arn, token, timeout, invocation_type, input_uri, output_uri, model_id = check_create(request)
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
                count = self.files.count_records(input_uri)
                if count < plan.min_records:
                    raise validation(BELOW_MINIMUM_MESSAGE.format(count=count, minimum=plan.min_records, model_id=model_id))
            job_id = self._new_id()
            now = time.time()
            job = BatchJob(
                job_id=job_id,
                job_arn=f"arn:aws:bedrock:{self.server.region}:{ACCOUNT_ID}:model-invocation-job/{job_id}",
                job_name=name,
                model_id=model_id,
                role_arn=role_arn,
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
            thread = threading.Thread(target=self._runner.run, args=(job,), name=f"batch-job-{job_id}", daemon=True)
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
        q = check_list(query)
        with self._lock:
            jobs = [
                j
                for j in self.jobs.values()
                if (q.status is None or j.status == q.status)
                and (q.contains is None or q.contains in j.job_name)
                and (q.after is None or j.submit_time > q.after)
                and (q.before is None or j.submit_time < q.before)
            ]
            jobs.sort(key=lambda j: j.submit_time, reverse=not q.ascending)
            page = [j.describe() for j in jobs[q.start : q.start + q.max_results]]
        out: dict[str, Any] = {"invocationJobSummaries": page}
        if q.start + q.max_results < len(jobs):
            out["nextToken"] = str(q.start + q.max_results)
        return out

    def stop(self, identifier: str) -> dict[str, Any]:
        """StopModelInvocationJob: an active job goes Stopping, then Stopped."""
        job = self._find(identifier)
        with self._lock:
            if job.status in TERMINAL_STATES or job.status == "Stopping":
                # Not verified: the wording of the refusal to stop a finished job.
                raise validation(f"The job {job.job_arn} cannot be stopped in state {job.status}.")
            job.stop_requested.set()
            job.move("Stopping")
        return {}

    # -- helpers -----------------------------------------------------------------------------

    def _throttle(self, operation: str) -> None:
        budget = self.plan.throttle_creates if operation == "create" else self.plan.throttle_gets
        with self._lock:
            if self._throttled[operation] < budget:
                self._throttled[operation] += 1
                raise ServiceError(429, "ThrottlingException", "Too many requests, please wait before trying again.", "throttled")

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
        check_job_identifier(identifier)
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
