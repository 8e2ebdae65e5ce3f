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

Its modules:

* ``control``: ``BatchJobs`` (the jobs, the operations, the test controls) and ``route``;
* ``checks``: the service model's checks of a request;
* ``plan``: ``BatchPlan`` and the refusal of a job below the minimum;
* ``job``: ``BatchJob`` and the states a job passes;
* ``lifecycle``: ``JobRunner``, a job's way through its states in its own thread;
* ``files``: a job's input and output on S3, the input's checks at validation;
* ``answers``: each record answered as ``InvokeModel`` answers it.
"""

from media_enrichment.testing.batch.control import BatchJobs, route
from media_enrichment.testing.batch.job import ACCOUNT_ID, ACTIVE_STATES, TERMINAL_STATES, BatchJob
from media_enrichment.testing.batch.plan import BELOW_MINIMUM_MESSAGE, BatchPlan

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
