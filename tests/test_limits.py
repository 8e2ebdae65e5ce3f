"""Shared rate limits: Prefect global concurrency limits with slot decay, made if missing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.ratecontrol import Limiter, build_gates

MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in a us- region


def _settings(**values) -> Settings:
    base = dict(provider="bedrock", aws_region="us-test-1")
    base.update(values)
    return Settings(**base)


def _read(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def test_limits_are_created_once_with_slot_decay(prefect_harness):
    from media_enrichment_prefect.tasks.limits import PrefectRateLimiter, ensure_rate_limits

    settings = _settings(describer_rpm=120, describer_tpm=90_000, embedder_rpm=600)
    limiters = ensure_rate_limits(settings)
    assert set(limiters) == {"describer-rpm", "describer-tpm", "embedder-rpm"}
    assert all(isinstance(v, PrefectRateLimiter) and isinstance(v, Limiter) and v.strict for v in limiters.values())

    rpm = _read(limiters["describer-rpm"].name)
    assert limiters["describer-rpm"].name == f"bedrock:us-test-1:{MODEL}:rpm"
    assert (rpm.limit, rpm.slot_decay_per_second, rpm.active) == (2, pytest.approx(2.0), True)
    tpm = _read(limiters["describer-tpm"].name)
    assert (tpm.limit, tpm.slot_decay_per_second) == (1500, pytest.approx(1500.0))
    assert _read(limiters["embedder-rpm"].name).slot_decay_per_second == pytest.approx(10.0)

    # Idempotent; an existing limit tuned by an operator is kept unless asked to update.
    again = ensure_rate_limits(_settings(describer_rpm=240, describer_tpm=90_000, embedder_rpm=600))
    assert _read(again["describer-rpm"].name).limit == 2 and again["describer-rpm"].max_occupy == 2
    ensure_rate_limits(_settings(describer_rpm=240), update=True)
    assert _read(again["describer-rpm"].name).slot_decay_per_second == pytest.approx(4.0)

    # Only what is configured gets a limit; the limiters plug into the gates.
    assert ensure_rate_limits(_settings()) == {}
    describer_gate, embedder_gate = build_gates(settings, limiters=limiters)
    assert describer_gate.requests is limiters["describer-rpm"] and embedder_gate.requests is limiters["embedder-rpm"]


def test_a_burst_beyond_the_limit_waits_for_the_decay(prefect_harness):
    from media_enrichment_prefect.tasks.limits import ensure_rate_limits

    # 120 rpm: 2 slots, decaying at 2 per second. 8 requests at once from 4 threads: 2 go at
    # once, the other 6 need the decay of 6 slots, i.e. at least 3 seconds.
    limiters = ensure_rate_limits(_settings(aws_region="us-burst-1", describer_rpm=120))
    limiter = limiters["describer-rpm"]
    started = time.monotonic()
    granted: list[float] = []

    def take(_: int) -> None:
        limiter.acquire()
        granted.append(time.monotonic() - started)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(take, range(8)))
    granted.sort()
    assert len(granted) == 8
    assert granted[-1] >= 2.9  # never faster than the decay
    assert sum(1 for t in granted if t < 0.9) <= 3  # no more than the burst (+1 decayed) up front


def test_tokens_larger_than_the_limit_are_taken_in_pieces(prefect_harness):
    from media_enrichment_prefect.tasks.limits import ensure_rate_limits

    limiters = ensure_rate_limits(_settings(aws_region="us-tpm-1", describer_tpm=6000))  # 100 a second
    limiter = limiters["describer-tpm"]
    assert limiter.max_occupy == 100
    started = time.monotonic()
    limiter.acquire(250)  # 100 at once, then 150 more to decay
    assert time.monotonic() - started >= 1.4


def test_a_missing_limit_is_an_error_not_a_silent_skip(prefect_harness):
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    from media_enrichment_prefect.tasks.limits import PrefectRateLimiter

    with pytest.raises(ConcurrencySlotAcquisitionError):
        PrefectRateLimiter("bedrock:nowhere:no-such-model:rpm").acquire()


def test_an_existing_limit_without_decay_is_refused(prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from media_enrichment_prefect.tasks.limits import ensure_rate_limits, limit_name

    name = limit_name(MODEL, "rpm", "us-nodecay-1")
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=5))
    with pytest.raises(ConfigError, match="slot decay"):
        ensure_rate_limits(_settings(aws_region="us-nodecay-1", describer_rpm=60))
    fixed = ensure_rate_limits(_settings(aws_region="us-nodecay-1", describer_rpm=60), update=True)
    assert _read(fixed["describer-rpm"].name).slot_decay_per_second == pytest.approx(1.0)
