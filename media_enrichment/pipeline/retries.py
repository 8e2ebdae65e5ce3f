"""The retry budget of a run: every layer's attempts, stated in one place, and their product bounded.

A model call that fails transiently (throttling, 5xx, timeouts) is retried by one layer at a
time, never by two on top of each other:

1. **botocore** retries the request inside one ``invoke_model`` call: ``bedrock_max_attempts``
   attempts in all (``bedrock_retry_mode``: ``standard`` backs off ``rand(0, 1) * min(2^(n-1), 20)``
   seconds after attempt ``n`` and stops early when its client-wide retry quota is spent).
2. **The chunk** gives an image whose call still failed ``transient_retries`` more passes at its
   end (after ``retry_delay_s * 2^(p-1)``, jittered by ±50%); a description already obtained is
   kept. Then the image becomes a failure row: a per-image error never fails the chunk task.
3. **Prefect's task retries** (``TASK_RETRIES`` of the enrich-chunk task) therefore never see a
   model error: they cover the infrastructure around the calls (staging I/O, the Prefect API,
   a worker lost). ``retried_by_task`` says which errors they retry. A chunk whose results were
   computed before such an error keeps them in its process, so the retry stages them without
   calling a model again.
4. **The next run** tries a failed image again, up to ``max_failure_attempts`` runs for the same
   bytes (``retry_failures`` lifts that).

So one always-throttled image costs at most ``requests_per_call`` requests to a model in a run
(``bedrock_max_attempts * (transient_retries + 1)``), and ``requests_per_call *
max_failure_attempts`` over the runs that retry it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from media_enrichment.config import Settings
from media_enrichment.errors import EnrichmentError

#: Prefect retries of one enrich-chunk task run (infrastructure errors only, see ``retried_by_task``).
TASK_RETRIES = 3
#: Seconds before each of them (2, 4, 8: Prefect's ``exponential_backoff(backoff_factor=2)``).
TASK_RETRY_DELAYS_S: tuple[float, ...] = tuple(2.0 * 2**n for n in range(TASK_RETRIES))
#: Prefect's jitter: each delay is drawn within ``delay * (1 ± factor)``, about its average.
TASK_RETRY_JITTER = 0.5

#: botocore's cap on one backoff sleep in ``standard`` and ``adaptive`` mode (``legacy`` has none).
_BOTOCORE_MAX_BACKOFF_S = 20.0
#: The chunk's pass delays are jittered by a factor drawn from [0.5, 1.5].
_PASS_JITTER_MAX = 1.5

#: OS errors no retry can fix: the dataset or staging location is a file, or not ours to write.
_FATAL_OS_ERRORS = (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def retried_by_task(error: BaseException) -> bool:
    """Whether the task layer (Prefect's retries of a chunk task) should retry this error.

    The library's own errors are not retried there: the fatal ones (access, settings, catalogue,
    dataset location) cannot be fixed by a retry, and a model error of one image has had its
    retries below (botocore, the chunk's passes) and is a failure row, not an exception. What is
    retried is the infrastructure: I/O while staging, the Prefect API, anything unexpected.

    Args:
        error: what the chunk task raised.

    Returns:
        True to retry the task run.
    """
    return not isinstance(error, (EnrichmentError, *_FATAL_OS_ERRORS))


@dataclass(frozen=True)
class RetryBudget:
    """Each retry layer's attempts for one run (see the module docstring).

    Attributes:
        botocore_mode: ``bedrock_retry_mode``.
        botocore_attempts: attempts per request, the first included (``bedrock_max_attempts``).
        chunk_passes: passes over a chunk's images that failed transiently, the first included
            (``transient_retries + 1``).
        pass_delay_s: base delay before the second pass (``retry_delay_s``; doubles per pass).
        task_retries: Prefect retries of a chunk task (infrastructure errors only).
        task_retry_delays_s: average seconds before each task retry.
        runs: runs that try a failing image with the same bytes (``max_failure_attempts``).
        request_timeout_s: the longest one attempt can take (connect + read timeout).
    """

    botocore_mode: str
    botocore_attempts: int
    chunk_passes: int
    pass_delay_s: float
    runs: int
    request_timeout_s: float
    task_retries: int = TASK_RETRIES
    task_retry_delays_s: tuple[float, ...] = TASK_RETRY_DELAYS_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryBudget:
        """The budget the settings give.

        Args:
            settings: the run's settings.

        Returns:
            The budget.
        """
        return cls(
            botocore_mode=settings.bedrock_retry_mode,
            botocore_attempts=settings.bedrock_max_attempts,
            chunk_passes=settings.transient_retries + 1,
            pass_delay_s=settings.retry_delay_s,
            runs=settings.max_failure_attempts,
            request_timeout_s=settings.bedrock_connect_timeout + settings.bedrock_read_timeout,
        )

    @property
    def transient_retries(self) -> int:
        """Extra passes of a chunk (the setting of that name)."""
        return self.chunk_passes - 1

    @property
    def requests_per_call(self) -> int:
        """The most requests one image's call to one model makes in a run when it keeps failing
        transiently: botocore's attempts in each of the chunk's passes (task retries add none)."""
        return self.botocore_attempts * self.chunk_passes

    @property
    def requests_over_runs(self) -> int:
        """The most such requests over the runs that try the image before it is left alone."""
        return self.requests_per_call * self.runs

    def backoff_s(self) -> float:
        """The longest one always-throttled call sleeps in a run: botocore's backoffs in each
        pass plus the delays between the chunk's passes (the answers themselves are quick)."""
        cap = None if self.botocore_mode == "legacy" else _BOTOCORE_MAX_BACKOFF_S
        per_request = sum(
            2.0 ** (n - 1) if cap is None else min(2.0 ** (n - 1), cap) for n in range(1, self.botocore_attempts)
        )
        between_passes = sum(self.pass_delay_s * 2 ** (p - 1) * _PASS_JITTER_MAX for p in range(1, self.chunk_passes))
        return per_request * self.chunk_passes + between_passes

    def worst_case_s(self) -> float:
        """The longest one call can take in a run if every attempt runs into the timeouts (a
        stalled service): each attempt's timeout plus ``backoff_s``."""
        return self.requests_per_call * self.request_timeout_s + self.backoff_s()

    def task_retry_wait_s(self) -> float:
        """The longest Prefect's task retries wait in all (each delay at most ``1 + jitter`` times its average)."""
        return sum(self.task_retry_delays_s) * (1 + TASK_RETRY_JITTER)

    def as_dict(self) -> dict[str, Any]:
        """The budget and its bounds, for the run summary."""
        return {
            **asdict(self),
            "task_retry_delays_s": list(self.task_retry_delays_s),
            "requests_per_call": self.requests_per_call,
            "requests_over_runs": self.requests_over_runs,
            "backoff_s": round(self.backoff_s(), 3),
            "worst_case_s": round(self.worst_case_s(), 3),
        }
