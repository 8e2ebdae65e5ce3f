"""``ImageWorkers``: a process works on at most the call windows' current limits (plus the images
being prepared) at once, on more as soon as the windows grow, and the chunks in flight share
the workers as one stream."""

from __future__ import annotations

import threading
import time

import pytest

from media_enrichment.errors import FatalProviderError
from media_enrichment.pipeline.execution import PREPARE_AHEAD_MAX, ImageWorkers, PrepareAhead
from media_enrichment.pipeline.plan import WorkItem


class Sink:
    """Collects the outcomes a pass delivers."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[WorkItem, dict]] = []

    def __call__(self, item: WorkItem, outcome: dict) -> None:
        self.outcomes.append((item, outcome))

    @property
    def ids(self) -> list[str]:
        return sorted(item.image_id for item, _ in self.outcomes)


def _items(n: int, prefix: str = "i") -> list[tuple[WorkItem, None]]:
    return [(WorkItem(image_id=f"{prefix}{k}", source_uri=f"/x/{prefix}{k}.png", content_sha256="0" * 64), None) for k in range(n)]


class Recorder:
    """An ``attempt`` that holds each image ``hold_s`` and records how many ran at once."""

    def __init__(self, hold_s: float = 0.2):
        self.hold_s, self.busy, self.peak, self.started = hold_s, 0, 0, []
        self.running: set[str] = set()
        self.alongside: dict[str, set[str]] = {}  # image -> the images running when it started
        self._lock = threading.Lock()

    def __call__(self, item: WorkItem, description: object) -> dict:
        with self._lock:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            self.started.append(item.image_id)
            self.alongside[item.image_id] = set(self.running)
            self.running.add(item.image_id)
        time.sleep(self.hold_s)
        with self._lock:
            self.busy -= 1
            self.running.discard(item.image_id)
        return {"image_id": item.image_id}


def test_no_more_images_at_once_than_the_capacity_and_never_above_the_cap():
    capacity = [3]
    workers = ImageWorkers(lambda: capacity[0], cap=8)
    try:
        # Each image is held 0.2 s, so that on a loaded machine every worker has started before
        # the first ones are done.
        attempt, sink = Recorder(), Sink()
        workers.submit(attempt, _items(9), sink).wait()
        assert sink.ids == sorted(f"i{k}" for k in range(9))
        assert attempt.peak == 3
        capacity[0] = 100  # the windows grew past what the pool has threads for
        attempt = Recorder()
        workers.submit(attempt, _items(24), Sink()).wait()
        assert attempt.peak == 8
    finally:
        workers.close()


def test_more_workers_start_when_the_windows_grow_during_a_chunk():
    capacity = [1]
    workers = ImageWorkers(lambda: capacity[0], cap=8)
    attempt = Recorder(hold_s=0.2)
    try:
        work = workers.submit(attempt, _items(16), Sink())
        time.sleep(0.5)
        assert workers.running == 1
        capacity[0] = 4  # a window grew: the next image taken starts three more workers
        work.wait()
        assert attempt.peak == 4
    finally:
        workers.close()


def test_workers_stop_when_the_windows_shrink():
    capacity = [4]
    workers = ImageWorkers(lambda: capacity[0], cap=8)
    attempt = Recorder(hold_s=0.05)
    try:
        work = workers.submit(attempt, _items(40), Sink())
        time.sleep(0.12)
        capacity[0] = 1  # throttling cut a window
        time.sleep(0.4)  # each worker stops after its image
        assert workers.running == 1 and attempt.busy <= 1
        work.wait()
    finally:
        workers.close()


def test_two_chunks_in_flight_share_the_workers_without_a_tail_between_them():
    workers = ImageWorkers(lambda: 4, cap=8)
    attempt = Recorder(hold_s=0.2)
    try:
        first = workers.submit(attempt, _items(6, "a"), Sink())
        second = workers.submit(attempt, _items(6, "b"), Sink())
        first.wait(), second.wait()
        # The second chunk's first image started while the first chunk's last ones still ran:
        # the workers took the next queued image, whichever chunk it was of.
        assert attempt.peak == 4
        assert {"a4", "a5"} & attempt.alongside["b0"]
    finally:
        workers.close()


def test_an_error_no_image_can_escape_stops_the_chunk_and_its_images_not_started_never_start():
    workers = ImageWorkers(lambda: 2, cap=2)
    started: list[str] = []

    def attempt(item: WorkItem, description: object) -> dict:
        started.append(item.image_id)
        time.sleep(0.05 if item.image_id == "i0" else 0.01)
        if item.image_id == "i1":
            raise FatalProviderError("access denied")
        return {"image_id": item.image_id}

    sink = Sink()
    try:
        work = workers.submit(attempt, _items(30), sink)
        with pytest.raises(FatalProviderError):
            work.wait()
        time.sleep(0.15)  # i0, in flight, finishes: its outcome is dropped; no other image starts
        assert len(started) <= 4 and "i1" not in sink.ids
        assert "i0" in started and "i0" not in sink.ids  # a later attempt enriches it once, not twice
    finally:
        workers.close()


def test_closed_workers_drop_their_queue_and_a_later_chunk_gets_new_ones():
    workers = ImageWorkers(lambda: 1, cap=1)
    attempt = Recorder(hold_s=0.05)
    work = workers.submit(attempt, _items(10), Sink())
    time.sleep(0.02)
    workers.close()
    with pytest.raises(RuntimeError, match="closed"):  # the chunk's thread does not wait forever
        work.wait()
    time.sleep(0.1)
    assert len(attempt.started) <= 2
    sink = Sink()
    workers.submit(Recorder(hold_s=0), _items(3), sink).wait()
    assert sink.ids == ["i0", "i1", "i2"]
    workers.close()


@pytest.mark.parametrize("count", [2, 7])
def test_every_image_of_a_chunk_gets_its_outcome_once(count):
    workers = ImageWorkers(lambda: 3, cap=4)
    try:
        sink = Sink()
        workers.submit(Recorder(hold_s=0), _items(count), sink).wait()
        assert sink.ids == sorted(f"i{k}" for k in range(count))
    finally:
        workers.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("prepare_s", "interval_s", "ahead"),
    [
        (0.0005, 0.004, 2),  # small PNGs, a zero-latency service: one in preparation, one spare
        (0.18, 0.04, 6),  # 12 MP JPEGs at 25 images a second: five in preparation, one spare
        (2.0, 0.04, PREPARE_AHEAD_MAX),  # never more than the cap
    ],
)
def test_images_prepared_ahead_follow_littles_law(prepare_s, interval_s, ahead):
    clock = _Clock()
    estimate = PrepareAhead(clock=clock)
    assert estimate() == 2, "before any image is measured"
    for _ in range(200):
        estimate.prepared(prepare_s)
        clock.now += interval_s
        estimate.finished()
    assert estimate() == ahead
