"""The retry budget: each layer's attempts from one place, and a throttled call retried by one layer at a time."""

from __future__ import annotations

import pytest

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import (
    CatalogAccessError,
    ConfigError,
    DatasetLocationError,
    FatalProviderError,
    ImageError,
    RetryableProviderError,
)
from media_enrichment.pipeline.retries import RetryBudget, retried_by_task
from media_enrichment.testing import BedrockServer, FaultPlan

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1
TITAN = "amazon.titan-embed-image-v1"


def test_the_budget_comes_from_the_settings_and_bounds_the_product():
    budget = RetryBudget.from_settings(
        Settings(bedrock_max_attempts=4, transient_retries=2, retry_delay_s=1.0, max_failure_attempts=3,
                 bedrock_connect_timeout=5, bedrock_read_timeout=120)
    )
    assert (budget.botocore_attempts, budget.chunk_passes, budget.transient_retries, budget.runs) == (4, 3, 2, 3)
    assert budget.requests_per_call == 12 and budget.requests_over_runs == 36
    # botocore sleeps at most 1 + 2 + 4 s per call (three retries), in each of 3 passes; the
    # passes wait at most 1.5 and 3 s.
    assert budget.backoff_s() == pytest.approx(3 * 7 + 1.5 + 3)
    assert budget.worst_case_s() == pytest.approx(12 * 125 + 25.5)
    assert budget.task_retries == 3 and budget.task_retry_delays_s == (2.0, 4.0, 8.0)
    assert budget.task_retry_wait_s() == pytest.approx(21.0)
    # legacy mode has no cap on one sleep: 1 + 2 + ... + 32 over 7 attempts, against 20 s for standard.
    legacy = RetryBudget.from_settings(Settings(bedrock_retry_mode="legacy", bedrock_max_attempts=7, transient_retries=0))
    standard = RetryBudget.from_settings(Settings(bedrock_max_attempts=7, transient_retries=0))
    assert legacy.backoff_s() == 63 and standard.backoff_s() == 1 + 2 + 4 + 8 + 16 + 20
    assert budget.as_dict()["requests_per_call"] == 12


def test_the_chunk_task_retries_infrastructure_errors_only():
    """Model errors had their retries below (botocore, the chunk's passes); fatal ones cannot be fixed."""
    from prefect.states import Failed

    from media_enrichment_prefect.tasks.enrichment import _retry_condition, enrich_chunk

    def retried(error: BaseException) -> bool:
        return _retry_condition(None, None, Failed(data=error))

    for error in (
        DatasetLocationError("no bucket"), CatalogAccessError("denied"), FatalProviderError("denied"), ConfigError("bad"),
        NotADirectoryError(20, "Not a directory"), PermissionError(13, "Permission denied"),
        RetryableProviderError("throttled"), ImageError("unreadable"),
    ):
        assert not retried(error) and not retried_by_task(error), error
    assert retried(OSError("connection reset")) and retried(TimeoutError("Prefect API")) and retried(KeyError("x"))
    assert enrich_chunk.retries == RetryBudget.from_settings(Settings()).task_retries == 3
    assert enrich_chunk.retry_delay_seconds == [2.0, 4.0, 8.0]


@pytest.mark.usefixtures("prefect_harness")
def test_an_always_throttled_image_is_tried_botocore_attempts_times_passes(aws_env, sample_manifest, tmp_path):
    """The server's quota lets one request in 119 s through per model: the access checks take
    it, and every description of the one image is refused after that. Through the real flow,
    whose chunk task has Prefect retries, the server sees exactly 3 botocore attempts in each of
    3 passes: task retries add no request."""
    from media_enrichment_prefect.flows.enrich import enrich_catalog

    with BedrockServer(faults=FaultPlan(rpm_quota=1, quota_window_s=119)) as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        for key, value in {"BEDROCK_MAX_ATTEMPTS": "3", "TRANSIENT_RETRIES": "2", "RETRY_DELAY_S": "0"}.items():
            aws_env.setenv(f"MEDIA_ENRICH_{key}", value)
        summary = enrich_catalog(
            source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", limit=1, embedding_dim=256
        )
        requests = dict(server.counters.requests)
        outcomes = dict(server.counters.model_outcomes)

    assert summary["enriched"] == 0 and summary["failed"] == 1
    assert summary["retries"]["requests_per_call"] == 9
    assert requests[CLAUDE] == 1 + 3 * 3, "the access check, then 3 attempts in each of 3 passes"
    assert outcomes[(CLAUDE, "quota")] == 9 and outcomes[(CLAUDE, "ok")] == 1
    assert requests[TITAN] == 1, "only its access check: the image never got past its description"
    failure = Dataset(tmp_path / "ds").read_failures().iloc[0]
    assert failure["stage"] == "describe" and failure["error_type"] == "ThrottlingException"
    assert failure["attempts"] == 3 and not failure["permanent"], "the next run tries it again"
