"""Rate control: token buckets on a fake clock, adaptive concurrency, gates on the real boto3 client."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from media_enrichment.config import Settings
from media_enrichment.errors import RetryableProviderError
from media_enrichment.images import CLAUDE_LIMITS, prepare_image
from media_enrichment.providers.bedrock import build_bedrock_providers
from media_enrichment.providers.bedrock.answers import METADATA_TOOL
from media_enrichment.providers.bedrock.describer import BedrockDescriber
from media_enrichment.providers.bedrock.embedders import BedrockEmbedder
from media_enrichment.aws import bedrock_runtime_client, make_session
from media_enrichment.testing import BedrockServer, FaultPlan
from media_enrichment.ratecontrol import CallWindow, Limiter, ModelGate, TokenBucket, build_gates
from media_enrichment.ratecontrol.window import INITIAL_WINDOW

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1


class FakeClock:
    """A clock whose sleep advances it: deterministic time for single-threaded tests."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# TokenBucket
# ---------------------------------------------------------------------------------------------


def test_bucket_grants_at_the_rate_from_a_fresh_start():
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock, sleep=clock.sleep)  # 10 per second, burst 10
    start = clock.now
    grants = []
    for _ in range(100):
        bucket.acquire()
        grants.append(clock.now - start)
    # A fresh bucket is empty: the k-th unit is due at k/10 s, never earlier.
    assert all(t >= (k + 1) / 10 - 1e-9 for k, t in enumerate(grants))
    assert grants[-1] == pytest.approx(10.0)
    # In any one-second window at most burst + rate * 1 s units.
    times = np.array(grants)
    assert max(np.sum((times >= t) & (times < t + 1.0)) for t in times) <= 20


def test_bucket_burst_is_capped_after_idle_time():
    clock = FakeClock()
    bucket = TokenBucket(600, burst=5, clock=clock, sleep=clock.sleep)
    clock.now += 50  # made long before its first use: still starts empty
    assert bucket.acquire() == pytest.approx(0.1)
    clock.now += 3600  # an hour idle: still only 5 in the bucket
    slept = len(clock.slept)
    for _ in range(5):
        assert bucket.acquire() == 0.0
    assert len(clock.slept) == slept
    start = clock.now
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.1)
    assert clock.now - start == pytest.approx(0.2)


def test_default_burst_is_one_second_of_the_rate_and_at_least_one():
    assert TokenBucket(3000).capacity == 50
    assert TokenBucket(6).capacity == 1
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_amounts_larger_than_the_bucket_wait_proportionally():
    clock = FakeClock()
    bucket = TokenBucket(60_000, burst=1000, initial=1000, clock=clock, sleep=clock.sleep)  # 1000 a second, full
    assert bucket.acquire(5000) == pytest.approx(4.0)
    assert bucket.acquire(500) == pytest.approx(0.5)  # queued behind the debt
    assert bucket.granted == 5500


def test_bucket_is_fair_and_exact_under_many_threads():
    bucket = TokenBucket(6000)  # 100 per second, real clock
    counts: dict[int, int] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def worker(i: int) -> None:
        for _ in range(10):
            bucket.acquire()
            with lock:
                counts[i] = counts.get(i, 0) + 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    elapsed = time.monotonic() - started
    assert sum(counts.values()) == 80 and set(counts.values()) == {10}
    assert bucket.granted == 80
    assert elapsed >= 0.79  # 80 units at 100/s from an empty bucket: never faster than the rate


# ---------------------------------------------------------------------------------------------
# CallWindow
# ---------------------------------------------------------------------------------------------


def test_throttle_halves_the_limit_once_per_cooldown_and_calls_grow_it_back_additively():
    clock = FakeClock()
    ac = CallWindow(16, cooldown_s=1.0, clock=clock)
    assert ac.limit == 16
    assert ac.on_throttle() is True and ac.limit == 8
    assert ac.on_throttle() is False and ac.limit == 8  # same cooldown: one cut per burst of 429s
    clock.now += 1.5
    assert ac.on_throttle() is True and ac.limit == 4
    clock.now += 1.5
    for _ in range(3):
        ac.on_throttle()
        clock.now += 1.5
    assert ac.limit == 1  # floor
    # After a cut growth is additive: one more slot per round trip (``limit`` completed calls,
    # ``INITIAL_WINDOW`` at least), never a jump.
    limits, steps = [ac.limit], 0
    while ac.limit < 16:
        _serve(ac, clock, calls=1, capacity=1000)
        steps += 1
        if ac.limit != limits[-1]:
            limits.append(ac.limit)
    assert limits == list(range(1, 17))
    assert sum(range(1, 16)) <= steps <= 1 + sum(max(INITIAL_WINDOW, n) for n in range(1, 16))
    _serve(ac, clock, calls=200, capacity=1000)
    assert ac.limit == 16  # never above the cap
    assert ac.cuts == 4 and ac.lowest == 1


def test_with_a_known_rate_the_window_grows_to_littles_law_and_no_further():
    # 20 calls/s at 0.5 s each need 10 in flight; with the headroom: ceil(20 * 0.5 * 1.25) + 1.
    ac = CallWindow(64, initial=4, rate=lambda: 20.0)
    assert ac.limit == 4 and ac.target() == 64  # no latency measured yet
    grown = []
    for _ in range(40):
        ac.observe(0.5)
        grown.append(ac.limit)
    assert ac.target() == 14 and ac.limit == 14
    assert grown[:10] == list(range(5, 15))  # slow start: one more per completed call
    # The latency falls (the service got faster): the rate needs fewer calls in flight.
    for _ in range(200):
        ac.observe(0.1)
    assert ac.limit == ac.target() == math.ceil(20 * 0.1 * 1.25) + 1


def _serve(window: CallWindow, clock: FakeClock, *, calls: int, capacity: int, latency: float = 0.5) -> None:
    """A service that answers ``capacity`` calls at once in ``latency`` seconds and queues the
    rest: with ``window.limit`` calls in flight it completes min(limit, capacity) / latency a second."""
    for _ in range(calls):
        busy = min(window.limit, capacity)
        clock.now += latency / busy
        window.observe(latency * max(1.0, window.limit / capacity))


def test_without_a_rate_the_window_grows_to_the_cap_while_calls_per_second_rise():
    clock = FakeClock()
    ac = CallWindow(32, initial=4, clock=clock)
    _serve(ac, clock, calls=300, capacity=1000)
    assert ac.limit == 32 and ac.highest == 32 and ac.plateaus == 0


def test_without_a_rate_the_window_holds_where_more_calls_bring_no_more_answers():
    clock = FakeClock()
    ac = CallWindow(64, initial=4, clock=clock)
    _serve(ac, clock, calls=600, capacity=10)  # the service (or the CPU) does 10 at a time
    assert ac.plateaus == 1
    assert 10 <= ac.limit <= 24  # the round trip past the plateau stops the doubling
    held = ac.limit
    _serve(ac, clock, calls=300, capacity=10)
    assert ac.limit == held  # holds: no slot is added that would only queue


@pytest.mark.parametrize("pause_s", [0.3, 1.0])
def test_one_slow_round_trip_does_not_hold_a_window_the_service_would_fill(pause_s):
    clock = FakeClock()
    ac = CallWindow(32, initial=4, clock=clock)
    _serve(ac, clock, calls=8, capacity=1000)  # slow start
    grown = ac.limit
    clock.now += pause_s  # the client paused (its CPU, a chunk starting): this round trip brings less
    _serve(ac, clock, calls=400, capacity=1000)
    # With a plateau decided on one round trip, this window held at 6 for the rest of the run.
    assert grown < 32 and ac.limit == 32 and ac.plateaus == 0


def test_at_millisecond_latencies_a_few_slow_round_trips_do_not_hold_the_window():
    """Against a service answering in 2 ms, a round trip of a window's completions lasts a few
    ms, and a hiccup of this process's threads (20 ms) makes one look flat: its rate is measured
    over ``MIN_ROUND_TRIP_S`` instead, which the hiccups do not flatten."""
    clock = FakeClock()
    ac = CallWindow(32, initial=4, clock=clock)
    _serve(ac, clock, calls=8, capacity=1000, latency=0.002)  # slow start
    for _ in range(3):  # three round trips in a row, each slowed by a hiccup
        clock.now += 0.02
        _serve(ac, clock, calls=ac.limit, capacity=1000, latency=0.002)
    _serve(ac, clock, calls=2000, capacity=1000, latency=0.002)
    # Judged on round trips of a window's completions, this window held at 6 for the rest of the run.
    assert ac.limit == 32 and ac.plateaus == 0


def test_a_window_grows_only_while_it_is_full():
    # Calls sent with slots to spare (the supply of images, not the window, was the limit, as at
    # the tail of a run or on a client whose CPU is busy) say nothing about a larger window.
    clock = FakeClock()
    for rate in (None, lambda: 20.0):
        ac = CallWindow(32, initial=INITIAL_WINDOW, rate=rate, clock=clock)
        for _ in range(100):
            clock.now += 0.1
            ac.observe(0.5, window_full=False)
        assert ac.limit == INITIAL_WINDOW and ac.latency_s == pytest.approx(0.5)
        for _ in range(8):
            clock.now += 0.1
            ac.observe(0.5, window_full=True)
        if rate is None:
            assert ac.limit == 2 * INITIAL_WINDOW  # a round trip of calls that found it full: doubled
        else:
            assert ac.limit == INITIAL_WINDOW + 8  # slow start toward Little's law: one more per call that found it full


def test_without_a_rate_a_window_gives_back_slots_no_call_used():
    # A window that grew while its calls were the limit, then carried fewer calls than it holds
    # for a round trip (the client's CPU or the supply of images became the limit), shrinks to
    # the most calls it had in flight, never below where it started.
    clock = FakeClock()
    ac = CallWindow(32, initial=16, clock=clock)
    for _ in range(40):  # at most 6 calls in flight at once
        for _ in range(6):
            ac.acquire()
        for _ in range(6):
            clock.now += 0.01
            ac.release()
            ac.observe(0.01, window_full=False)
    assert ac.limit == 6
    for _ in range(40):  # then one at a time
        ac.acquire()
        clock.now += 0.01
        ac.release()
        ac.observe(0.01, window_full=False)
    assert ac.limit == INITIAL_WINDOW


def test_at_millisecond_latencies_a_window_doubles_once_per_round_trip_and_holds_where_the_client_is_the_limit():
    """A service answering in 2 ms to a client that can send no more than 4 calls at a time (its
    CPU): a round trip measured over ``MIN_ROUND_TRIP_S`` holds hundreds of completions. Grown by
    one per completion, as slow start does with a known rate, this window reached the cap of 32
    within its first round trip, and every slot was a thread of the process queueing for the
    interpreter lock; judged once per round trip, it doubles once, finds no more calls per
    second, and goes back."""
    clock = FakeClock()
    ac = CallWindow(32, initial=4, clock=clock)
    _serve(ac, clock, calls=3000, capacity=4, latency=0.002)
    assert ac.highest == 8 and ac.limit == 4 and ac.plateaus == 1


def test_a_gate_reports_whether_its_call_found_the_window_full():
    # One call at a time through a window of 4 never fills it: it never grows (and gives back
    # the slots no call used, down to where windows start).
    alone = ModelGate("m", concurrency=CallWindow(32, initial=4))
    for _ in range(50):
        with alone.call():
            time.sleep(0.005)
    assert alone.concurrency.highest == 4 and alone.concurrency.limit == INITIAL_WINDOW
    # Eight callers keep a window of 4 full (each freed slot is taken at once), and more calls in
    # flight bring more calls per second: it grows.
    crowded = ModelGate("m", concurrency=CallWindow(32, initial=4))

    def call() -> None:
        for _ in range(10):
            with crowded.call():
                time.sleep(0.03)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: call(), range(8)))
    assert crowded.concurrency.highest > 4


def test_without_a_rate_a_limiter_that_makes_calls_wait_stops_the_growth():
    clock = FakeClock()
    ac = CallWindow(64, initial=4, clock=clock)
    for _ in range(50):
        clock.now += 0.1
        ac.observe(0.5, rate_waited=True)  # a shared limiter of unknown rate is the bottleneck
    assert ac.limit == 4  # (it would have grown to the cap in 50 calls)


def test_tolerance_ignores_sporadic_throttling_but_not_sustained_throttling():
    clock = FakeClock()
    ac = CallWindow(32, tolerance=0.15, window=50, clock=clock)
    for i in range(1000):  # 4 % throttled, evenly spread
        clock.now += 0.02
        ac.on_throttle() if i % 25 == 0 else ac.on_success()
    assert ac.limit == 32 and ac.cuts == 0
    for _ in range(20):  # every call throttled
        clock.now += 0.02
        ac.on_throttle()
    assert ac.limit == 16 and ac.cuts == 1


def test_the_semaphore_blocks_at_the_limit():
    ac = CallWindow(2, cooldown_s=0.0)
    assert ac.acquire() and ac.acquire()
    assert ac.acquire(timeout=0.05) is False
    ac.release()
    assert ac.acquire(timeout=0.05) is True
    ac.on_throttle()  # limit 1 while 2 are in flight: both finish, nobody new gets in
    ac.release()
    assert ac.acquire(timeout=0.05) is False
    ac.release()
    assert ac.in_flight == 0 and ac.acquire(timeout=0.05) is True
    ac.release()
    with pytest.raises(RuntimeError):
        ac.release()


def test_gate_takes_slot_request_and_tokens_and_counts():
    clock = FakeClock()
    requests = TokenBucket(60, burst=1, initial=1, clock=clock, sleep=clock.sleep)
    tokens = TokenBucket(6000, burst=100, initial=100, clock=clock, sleep=clock.sleep)
    ac = CallWindow(4, clock=clock)
    gate = ModelGate("describer", requests=requests, tokens=tokens, concurrency=ac, clock=clock)
    with gate.call(tokens=100):
        assert ac.in_flight == 1
    assert ac.in_flight == 0 and clock.now == 100.0  # both budgets had enough
    with gate.call(tokens=300):
        pass
    # One request a second and 100 tokens a second: the second call waited for both, in turn.
    assert clock.slept == [pytest.approx(1.0), pytest.approx(2.0)]
    gate.throttled()
    gate.succeeded()
    stats = gate.stats()
    assert stats["calls"] == 2 and stats["throttles"] == 1 and stats["successes"] == 1
    assert stats["tokens_requested"] == 400 and stats["waits"] == 1 and stats["limit"] == 2
    assert isinstance(requests, Limiter)


def test_build_gates_from_settings_and_injected_limiters():
    class Recorder:
        def __init__(self) -> None:
            self.amounts: list[int] = []

        def acquire(self, amount: int = 1) -> None:
            self.amounts.append(amount)

    settings = Settings(describer_rpm=120, describer_tpm=60_000, embedder_rpm=600, concurrency=8)
    d, e = build_gates(settings)
    # Per-second refill and one second of burst: 120/min -> 2/s, 60,000/min -> 1000/s, 600/min -> 10/s.
    assert (d.requests.rate_per_second, d.requests.capacity) == (pytest.approx(2.0), pytest.approx(2.0))
    assert (d.tokens.rate_per_second, d.tokens.capacity) == (pytest.approx(1000.0), pytest.approx(1000.0))
    assert (e.requests.rate_per_second, e.requests.capacity) == (pytest.approx(10.0), pytest.approx(10.0))
    assert e.tokens is None
    assert d.concurrency.max_in_flight == 8 and e.concurrency is not d.concurrency

    shared = Recorder()
    d, e = build_gates(settings, limiters={"describer-rpm": shared})
    assert d.requests is shared and isinstance(d.tokens, TokenBucket)
    with d.call(tokens=10):
        pass
    assert shared.amounts == [1]

    d, e = build_gates(Settings(adaptive_concurrency=False))
    assert (d.requests, d.tokens, e.requests) == (None, None, None)
    # Without adaptation the window is fixed at the cap: still a bound on calls in flight.
    assert d.concurrency.limit == d.concurrency.max_in_flight == 32
    for _ in range(100):
        d.concurrency.observe(0.5)
    assert d.concurrency.on_throttle() is False and d.concurrency.limit == 32
    with pytest.raises(ValueError):
        build_gates(settings, limiters={"describer-rqm": shared})


# ---------------------------------------------------------------------------------------------
# Gates on the real boto3 client against the Bedrock-compatible server
# ---------------------------------------------------------------------------------------------


def _images(n: int) -> list:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), "RGB").save(buffer, format="PNG")
        out.append(prepare_image(buffer.getvalue(), CLAUDE_LIMITS))
    return out


def _describe_all(describer: BedrockDescriber, images: list, threads: int = 8) -> int:
    """Describe every image from ``threads`` threads; returns how many failed for good."""

    def one(image) -> bool:
        try:
            describer.describe(image)
            return True
        except RetryableProviderError:
            return False

    with ThreadPoolExecutor(threads) as pool:
        return sum(1 for ok in pool.map(one, images) if not ok)


def _client(**overrides):
    values = dict(provider="bedrock", bedrock_max_attempts=4, bedrock_read_timeout=10.0, concurrency=8)
    values.update(overrides)
    return bedrock_runtime_client(make_session(profile=None, region=None), settings=Settings(**values))


@pytest.mark.slow  # runs at a real quota for several seconds
def test_a_gate_just_under_the_quota_avoids_the_throttling_an_ungated_client_meets(aws_env):
    # 1200 rpm enforced over a sliding 2 s window: at most 40 requests in any 2 seconds.
    plan = FaultPlan(rpm_quota=1200, quota_window_s=2.0)
    images = _images(60)
    with BedrockServer(faults=plan, max_lifetime=120) as server:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)

        # 75 % of the quota: room for the server stamping arrivals late on a busy machine.
        gate = ModelGate("describer", requests=TokenBucket(900), concurrency=CallWindow(8))
        lost = _describe_all(BedrockDescriber(_client(), model_id=CLAUDE, gate=gate), images)
        gated = dict(server.counters.outcomes)
        assert lost == 0 and gated.get("ok") == 60
        assert gated.get("quota", 0) <= 1  # (almost) never throttled
        assert gate.stats()["calls"] == 60 and gate.successes == 60

        server.reset()
        time.sleep(2.1)  # let the window empty
        # Without the gate (and without botocore retries, to keep this short): over the quota.
        lost = _describe_all(BedrockDescriber(_client(bedrock_max_attempts=1), model_id=CLAUDE), images)
        ungated = dict(server.counters.outcomes)
        assert ungated.get("quota", 0) >= 10 and lost == ungated["quota"]
        assert ungated.get("ok", 0) + lost == 60


@pytest.mark.slow  # 30 calls to the loopback Bedrock server at a quota, with botocore's retries (3-4 s)
def test_throttling_seen_through_the_botocore_hook_cuts_the_concurrency(aws_env):
    plan = FaultPlan(rpm_quota=600, quota_window_s=1.0)  # 10 requests per sliding second
    images = _images(30)
    with BedrockServer(faults=plan, max_lifetime=120) as server:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        ac = CallWindow(8, cooldown_s=0.2)
        gate = ModelGate("describer", concurrency=ac)
        client = _client(bedrock_max_attempts=2)
        describer = BedrockDescriber(client, model_id=CLAUDE, gate=gate)
        embedder = BedrockEmbedder(client, model_id="amazon.titan-embed-image-v1", dim=256)  # same client, no gate
        _describe_all(describer, images)
        embedder.embed_text("no gate on this call")
        quota_429s = server.counters.model_outcomes[(CLAUDE, "quota")]
        assert quota_429s >= 5
        # Every throttled attempt inside botocore's retries was seen, and only the describer's.
        assert gate.throttles == quota_429s
        assert gate.successes == server.counters.model_outcomes[(CLAUDE, "ok")]
        assert ac.cuts >= 1 and ac.lowest < 8
        assert gate.retries_charged >= quota_429s


@pytest.mark.slow  # the loopback Bedrock server and a boto3 client (2 s)
def test_build_bedrock_providers_gates_both_models_from_settings(aws_env):
    with BedrockServer(max_lifetime=60) as server:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        settings = Settings(provider="bedrock", describer_rpm=6000, describer_tpm=1_000_000, embedder_rpm=6000, embedding_dim=256)
        describer, embedder = build_bedrock_providers(settings)
        assert describer.client is embedder.client
        image = _images(1)[0]
        assert (image.width, image.height) == (32, 24)
        billed = describer.describe(image).input_tokens
        embedder.embed_image(image)
        d, e = describer.gate.stats(), embedder.gate.stats()
        assert d["calls"] == d["successes"] == 1 and e["calls"] == e["successes"] == 1
        # 32 x 24 = 768 px -> ceil(768 / 750) = 2 image tokens, plus the prompt and the tool
        # schema at 3.5 characters a token.
        text_chars = len(describer.prompt.text) + len(json.dumps(METADATA_TOOL))
        assert d["tokens_requested"] == 2 + math.ceil(text_chars / 3.5)
        # The estimate errs high: never below what the server billed for the same request.
        assert d["tokens_requested"] >= billed
        assert d["rpm"] == 6000 and d["tpm"] == 1_000_000 and e["rpm"] == 6000
