"""``ImageSlots``: a process works on at most the call windows' current limits (plus the images
being prepared) at once, and on more as soon as the windows grow."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from media_enrichment.pipeline.execution import ImageSlots


def _peak(slots: ImageSlots, *, images: int, hold_s: float = 0.1) -> int:
    """The most images holding a slot at once while ``images`` threads each take one."""
    busy = peak = 0
    lock = threading.Lock()

    def one(_: int) -> None:
        nonlocal busy, peak
        with slots.held():
            with lock:
                busy += 1
                peak = max(peak, busy)
            time.sleep(hold_s)
            with lock:
                busy -= 1

    with ThreadPoolExecutor(images) as pool:
        list(pool.map(one, range(images)))
    return peak


def test_no_more_images_at_once_than_the_capacity_and_never_above_the_cap():
    capacity = [3]
    slots = ImageSlots(lambda: capacity[0], cap=8)
    assert _peak(slots, images=12) == 3
    capacity[0] = 100  # the windows grew past what the pool has threads for
    assert _peak(slots, images=12) == 8


def test_a_waiting_image_starts_when_the_windows_grow():
    capacity = [1]
    slots = ImageSlots(lambda: capacity[0], cap=8, poll_s=0.01)
    started = threading.Event()

    def wait_for_a_slot() -> None:
        with slots.held():
            started.set()

    with slots.held():  # the only slot
        waiter = threading.Thread(target=wait_for_a_slot)
        waiter.start()
        assert not started.wait(0.1)
        capacity[0] = 2  # a window grew: the waiter goes ahead without any slot given back
        assert started.wait(2)
    waiter.join(2)
