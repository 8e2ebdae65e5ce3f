"""A run's budget: at most ``max_images`` images and about ``max_cost_usd`` dollars enriched.

``max_images`` cuts the plan before it is split into chunks (``RunDriver.chunks``): the images
past it wait for the next run, which plans them again. ``max_cost_usd`` is checked as chunks
are submitted: a chunk is admitted only while what the run has spent (list prices of the
tokens and images of its staged chunks) plus what the chunks in flight and this one are
expected to cost stays within it. The expected cost of an image is the run's average so far
plus ``MARGIN``; before the first chunk is staged, ``PRIOR_INPUT_TOKENS`` input tokens and
``max_output_tokens`` output tokens an image. Chunks already in flight always finish, and
everything finished is committed, so a run whose last chunks cost more than expected can end
slightly over: its summary says what it spent and why it stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from media_enrichment.pipeline.staging import StagedChunk

__all__ = ["MARGIN", "PRIOR_INPUT_TOKENS", "RunBudget"]

#: Expected cost of an image over the run's average so far.
MARGIN = 1.2
#: Input tokens an image is expected to cost before any is measured (a large image, the prompt
#: and the tool schema; ``media_enrichment.tokens`` estimates 1,534 tokens for the largest
#: image Claude is sent).
PRIOR_INPUT_TOKENS = 2_500

#: USD of ``(input_tokens, output_tokens, images)`` at the run's prices (None: unknown price).
CostOf = Callable[[int, int, int], float | None]


@dataclass
class RunBudget:
    """What a run may still submit (thread-safe); see the module docstring.

    Attributes:
        max_cost_usd: the run's budget in USD (None: no limit).
        cost_of: prices tokens and images.
        prior_output_tokens: output tokens an image is expected to cost before any is measured.
        stopped: why the run stopped submitting chunks (None: it did not).
        deferred: images of the plan not submitted (left for the next run).
    """

    max_cost_usd: float | None
    cost_of: CostOf
    prior_output_tokens: int = 1024
    stopped: str | None = None
    deferred: int = 0
    _in_flight: int = field(default=0, init=False)
    _tokens: list[int] = field(default_factory=lambda: [0, 0], init=False)  # input, output
    _images: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def spent_usd(self) -> float:
        """List-price cost of the staged chunks recorded so far."""
        with self._lock:
            return self._spent()

    def _spent(self) -> float:
        return self.cost_of(self._tokens[0], self._tokens[1], self._images) or 0.0

    def _per_image(self) -> float:
        if self._images:
            return self._spent() / self._images * MARGIN
        return self.cost_of(PRIOR_INPUT_TOKENS, self.prior_output_tokens, 1) or 0.0

    def admit(self, images: int) -> bool:
        """Whether a chunk of ``images`` images may be submitted now; if so it counts as in flight."""
        with self._lock:
            if self.stopped is not None:
                return False
            if self.max_cost_usd is not None:
                expected = self._spent() + (self._in_flight + images) * self._per_image()
                if expected > self.max_cost_usd:
                    if self._in_flight:
                        return False  # maybe later: the chunks in flight may cost less than expected
                    self.stopped = (
                        f"max_cost_usd: ${self._spent():.4f} spent, the next chunk of {images} images would "
                        f"pass ${self.max_cost_usd:g}"
                    )
                    return False
            self._in_flight += images
            return True

    def record(self, staged: StagedChunk, *, images: int) -> None:
        """A submitted chunk of ``images`` images finished (staged, or reused from staging)."""
        with self._lock:
            self._in_flight -= images
            self._tokens[0] += staged.input_tokens
            self._tokens[1] += staged.output_tokens
            self._images += staged.enriched

    def close(self, not_submitted: Sequence[Sequence[object]]) -> None:
        """The run submitted all it will: count the images left for the next run."""
        with self._lock:
            self.deferred += sum(len(chunk) for chunk in not_submitted)
