"""How the test server runs batch jobs: ``BatchPlan`` (timing, quotas and injected faults), and
the service's refusal of a job below the per-model minimum (``BELOW_MINIMUM_MESSAGE``, at creation
or at validation as ``BatchPlan.refuse_small_at`` says)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BELOW_MINIMUM_MESSAGE", "BatchPlan"]

#: The refusal of a job below the per-model minimum. The service names this quota "Minimum number
#: of records per batch inference job"; the exact message is not verified.
BELOW_MINIMUM_MESSAGE = (
    "The number of records in the input ({count}) is less than the minimum number of records per batch "
    "inference job ({minimum}) for model {model_id}."
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

