"""How the model calls of a chunk are executed: the ``Executor`` interface and its on-demand kind.

An executor turns a chunk of ``WorkItem``s into a ``ChunkResult``: an assets row per image that
succeeded and a failure row per image that did not. What it must keep, whatever its way of
calling the models (on-demand calls here, as each model's call window allows; Bedrock batch
jobs in ``pipeline/batch/``, which builds its rows with ``asset_row`` too):

* a per-image error (unreadable image, refused request, transient provider error once its
  retries are spent, unusable answer) becomes that image's failure row and never fails the
  chunk: the retries of the layer above (Prefect's task retries) are not spent on model calls;
* errors no image can escape (``FatalProviderError``, ``CatalogAccessError``) are raised;
* ``versions`` names the models and prompt whose rows it writes (the chunk's staging key).
"""

from __future__ import annotations

import contextvars
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import numpy as np

from media_enrichment.errors import CatalogAccessError, EnrichmentError, FatalProviderError, RetryableProviderError
from media_enrichment.images import SourceFacts, prepare_images
from media_enrichment.pipeline.plan import ModelVersions, Reader, WorkItem, failure_row, sha256_hex
from media_enrichment.providers.base import Describer, Description, Embedder


@dataclass
class ChunkResult:
    """Rows and failures of one chunk."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return sum(r["input_tokens"] for r in self.rows)

    @property
    def output_tokens(self) -> int:
        return sum(r["output_tokens"] for r in self.rows)


@runtime_checkable
class Executor(Protocol):
    """The way a chunk's model calls are executed (see the module docstring for its contract)."""

    @property
    def versions(self) -> ModelVersions:
        """The models and prompt version of the rows it writes."""
        ...

    def enrich(self, items: Sequence[WorkItem], *, result: ChunkResult | None = None) -> ChunkResult:
        """Enrich a chunk: a row or a failure row per item.

        Args:
            items: the chunk's images.
            result: what an interrupted attempt at this chunk did: its images are not enriched
                again, and rows are added to it as they are made, so the caller keeps them if
                this attempt is interrupted too.

        Raises:
            FatalProviderError: no image can succeed (access denied, unknown model).
            CatalogAccessError: the catalogue's storage refused the credentials.
        """
        ...

    def close(self) -> None:
        """Release what it holds (threads, jobs it follows) when the run's services are dropped."""
        ...


class _StageFailure(Exception):
    """One image failed at one stage; carries what was already paid for (the description) and
    the hash of the bytes read (None: not read), for its failure row."""

    def __init__(
        self, stage: str, error: EnrichmentError, description: Description | None, content_sha256: str | None = None
    ):
        super().__init__(str(error))
        self.stage, self.error, self.description = stage, error, description
        self.content_sha256 = content_sha256


#: Most images a process reads and prepares beyond what the two call windows hold.
PREPARE_AHEAD_MAX = 8
#: Weight of a new sample in ``PrepareAhead``'s moving averages.
_AHEAD_EWMA = 0.1


class PrepareAhead:
    """How many images a process reads and prepares beyond what the two call windows hold, so
    that a freed slot finds its next image ready: Little's law on the images' own times.

    Images finish one every ``interval`` seconds and preparing one (reading it, its checks and
    encodings) takes ``prepare_s``, so ``prepare_s / interval`` images must be in preparation at
    any time; one more absorbs the jitter. A run of small PNGs against a fast service prepares
    one or two ahead: each worker beyond that only queues for a call slot and for Python's
    interpreter lock (against a zero-latency server, a fixed 4 cost 7-15 % more CPU per image
    than 2 in two paired trials of 6-8 rounds, and no more in a third). Twelve-megapixel JPEGs
    at Claude's pace prepare four to six ahead. Between measurements the estimate is 2.

    The moving averages are updated without a lock from the image workers: a lost update only
    delays the estimate by a sample.
    """

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._prepare_s: float | None = None
        self._interval_s: float | None = None
        self._last_finished: float | None = None

    def prepared(self, seconds: float) -> None:
        """One image was read and prepared in ``seconds`` (wall clock)."""
        last = self._prepare_s
        self._prepare_s = seconds if last is None else (1 - _AHEAD_EWMA) * last + _AHEAD_EWMA * seconds

    def finished(self) -> None:
        """One image finished (a row or a failure)."""
        now, last = self._clock(), self._last_finished
        self._last_finished = now
        if last is not None:
            gap = max(0.0, now - last)
            mean = self._interval_s
            self._interval_s = gap if mean is None else (1 - _AHEAD_EWMA) * mean + _AHEAD_EWMA * gap

    def __call__(self) -> int:
        """Images to prepare ahead now: ``ceil(prepare_s / interval) + 1``, between 1 and ``PREPARE_AHEAD_MAX``."""
        prepare_s, interval_s = self._prepare_s, self._interval_s
        if prepare_s is None or interval_s is None:
            return 2
        return max(1, min(PREPARE_AHEAD_MAX, math.ceil(prepare_s / max(interval_s, 1e-6)) + 1))


def _window_now(provider: Describer | Embedder) -> int:
    """The calls a provider's window lets in flight now (its cap when it has no moving window)."""
    gate = getattr(provider, "gate", None)
    window = getattr(gate, "concurrency", None)
    return window.limit if window is not None else provider.calls_in_flight


#: What an image's attempt gives: its assets row, or the stage it failed at.
Outcome = dict[str, Any] | _StageFailure
#: Takes each image's outcome as it completes (on the worker that made it).
OutcomeSink = Callable[[WorkItem, Outcome], None]


class _Pass:
    """One pass over a chunk's pending images on the process's image workers: each outcome goes
    to the pass's sink as it completes, and ``wait`` returns when the last one is in, or when
    an error no image can escape stopped the pass (then it raises it). Once stopped, outcomes
    still coming from images in flight are dropped, so a later attempt at the chunk never sees
    an image twice."""

    def __init__(self, count: int, sink: OutcomeSink):
        self.remaining, self._sink = count, sink
        self.error: BaseException | None = None
        self.stopped = False  # its images not yet started are dropped
        self._done = threading.Event()
        self._lock = threading.Lock()
        if count == 0:
            self._done.set()

    def add(self, item: WorkItem, outcome: Outcome) -> None:
        with self._lock:
            if self.stopped:
                return
            self._sink(item, outcome)
            self.remaining -= 1
            if self.remaining == 0:
                self._done.set()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if not self.stopped:
                self.error, self.stopped = error, True
        self._done.set()

    def wait(self) -> None:
        """Wait for every outcome. The images not started by then never start, also when the
        waiting thread is interrupted; those in flight finish, unseen.

        Raises:
            The error that stopped the pass (no image can succeed).
        """
        try:
            self._done.wait()
        finally:
            with self._lock:
                self.stopped = True
        if self.error is not None:
            raise self.error


class ImageWorkers:
    """The image workers of one process: the images of every chunk in flight wait in one queue,
    and as many worker loops as ``capacity()`` allows now (the two call windows' current limits
    plus the images prepared ahead, ``PrepareAhead``, at most ``cap``) take them one after the other.

    A worker that finishes an image takes the next at once, whichever chunk it belongs to, so
    no thread waits or wakes per image, and the chunks in flight form one stream with no tail
    between them. (Waking a thread costs GIL time: on a zero-latency server, py-spy put 11 % of
    the GIL's samples in ``Condition.notify`` when images waited for a slot and each finished
    image woke its chunk's thread; 3 % with these workers.) Workers start when images are
    queued or the windows have grown, and stop when the queue is empty or the windows shrank
    below the workers running; ``cap`` bounds the pool's threads.
    """

    def __init__(self, capacity: Callable[[], int], *, cap: int):
        self._capacity, self.cap = capacity, cap
        self._lock = threading.Lock()
        self._queue: deque[tuple[_Pass, WorkItem, Description | None, contextvars.Context]] = deque()
        self._running = 0
        self._pool: ThreadPoolExecutor | None = None

    def capacity(self) -> int:
        return max(1, min(self.cap, self._capacity()))

    @property
    def running(self) -> int:
        """Worker loops running now."""
        return self._running

    def submit(self, attempt: Callable[[WorkItem, Description | None], Outcome],
               pending: Sequence[tuple[WorkItem, Description | None]], sink: OutcomeSink) -> _Pass:
        """Queue the pending images for ``attempt`` and start workers for them; each outcome
        goes to ``sink`` as it completes.

        Each image runs in a copy of the caller's context (an orchestrator's settings and run
        context live in context variables, which worker threads would not see otherwise).

        Returns:
            The pass: ``wait()`` for its end.
        """
        work = _Pass(len(pending), sink)
        with self._lock:
            self._queue.extend((work, item, description, contextvars.copy_context()) for item, description in pending)
        self._start(attempt)
        return work

    def _start(self, attempt: Callable[[WorkItem, Description | None], Outcome]) -> None:
        """Start workers up to the capacity now (no more than the queue has images for)."""
        with self._lock:
            more = min(self.capacity(), self._running + len(self._queue)) - self._running
            if more <= 0:
                return
            self._running += more
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.cap, thread_name_prefix="enrich-image")
            pool = self._pool
        for started in range(more):
            try:
                pool.submit(self._work, attempt)
            except RuntimeError:  # the pool was shut down meanwhile (close): these never run
                with self._lock:
                    self._running -= more - started
                return

    def _work(self, attempt: Callable[[WorkItem, Description | None], Outcome]) -> None:
        """One worker loop: queued images one after the other, until the queue is empty or the
        capacity fell below the workers running."""
        while True:
            with self._lock:
                if not self._queue or self._running > self.capacity():
                    self._running -= 1
                    return
                work, item, description, context = self._queue.popleft()
                grown = self._running < self.capacity() and bool(self._queue)
            try:
                if grown:  # the windows grew since the workers were started
                    self._start(attempt)
                if not work.stopped:
                    work.add(item, context.run(attempt, item, description))
            except BaseException as exc:  # FatalProviderError, CatalogAccessError, or a bug: the pass's
                work.fail(exc)  # waiting thread raises it; this worker goes on with the queue

    def close(self) -> None:
        """Drop the queued images and stop the pool's threads once their images are done. A
        chunk whose images were dropped fails (its thread raises ``RuntimeError``), so that no
        chunk waits for images that will never run."""
        with self._lock:
            dropped = {id(work): work for work, *_ in self._queue}
            self._queue.clear()
            pool, self._pool = self._pool, None
        for work in dropped.values():
            work.fail(RuntimeError("the run's image workers were closed before this chunk's images ran"))
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def image_threads(describer: Describer, embedder: Embedder) -> int:
    """Images one process works on at once: 1 when both providers work one call at a time (the
    local provider, bound by this machine's CPU), else the sum of the two models' window caps,
    so that both windows can be full at once (an image holds a describer slot, then an
    embedder slot)."""
    d, e = describer.calls_in_flight, embedder.calls_in_flight
    return 1 if max(d, e) <= 1 else d + e


@dataclass
class ChunkEnricher:
    """The on-demand ``Executor``: each image is read, prepared, described and embedded; a
    chunk's images run side by side on the process's ``ImageWorkers`` (at most ``threads``),
    shared by every chunk of the run in this process, so the models' call windows
    (``ratecontrol.CallWindow``), not the chunks, decide how many calls are in flight. With
    ``threads == 1`` a chunk's images run one after the other in the chunk's own thread.

    Transient provider errors (throttling, 5xx, timeouts that outlasted the client's own retries)
    get ``transient_retries`` more passes at the end of the chunk, after a backoff with jitter;
    a description already obtained is kept, so only the failed call is repeated.
    """

    describer: Describer
    embedder: Embedder
    read: Reader
    run_id: str
    batch: str | None = None
    transient_retries: int = 2
    retry_delay_s: float = 1.0
    threads: int = 1
    _workers: ImageWorkers | None = field(default=None, init=False, repr=False)
    ahead: PrepareAhead = field(default_factory=PrepareAhead, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.threads > 1:
            self._workers = ImageWorkers(
                lambda: _window_now(self.describer) + _window_now(self.embedder) + self.ahead(), cap=self.threads
            )

    @property
    def versions(self) -> ModelVersions:
        return ModelVersions.of(self.describer, self.embedder)

    def enrich(self, items: Sequence[WorkItem], *, result: ChunkResult | None = None) -> ChunkResult:
        """Enrich every item; a per-image error becomes a failure row.

        Args:
            items: the chunk's images.
            result: an interrupted attempt's result: images it holds a row or a failure row of
                are skipped; new rows are added to it as they are made.

        Returns:
            ``result`` (or a new one) with a row or a failure row per item.

        Raises:
            FatalProviderError: no image can succeed (access denied, unknown model).
            CatalogAccessError: the catalogue's storage refused the credentials or has no such bucket.
        """
        result = ChunkResult() if result is None else result
        done = {row["image_id"] for row in result.rows} | {row["image_id"] for row in result.failures}
        pending: list[tuple[WorkItem, Description | None]] = [(item, None) for item in items if item.image_id not in done]
        for attempt in range(self.transient_retries + 1):
            if not pending:
                break
            if attempt:
                time.sleep(self.retry_delay_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            retry: list[tuple[WorkItem, Description | None]] = []

            def record(item: WorkItem, outcome: Outcome, attempt: int = attempt, retry: list = retry) -> None:
                # As each image completes (a list's append is atomic): an interrupted attempt
                # leaves what it did in ``result``.
                if isinstance(outcome, dict):
                    result.rows.append(outcome)
                elif isinstance(outcome.error, RetryableProviderError) and attempt < self.transient_retries:
                    retry.append((item, outcome.description))
                else:
                    result.failures.append(
                        failure_row(
                            image_id=item.image_id, source_uri=item.source_uri, stage=outcome.stage,
                            error=outcome.error, run_id=self.run_id, attempts=attempt + 1,
                            content_sha256=outcome.content_sha256 or item.content_sha256,
                        )
                    )

            self._run(pending, record)
            pending = retry
        return result

    def _run(self, pending: Sequence[tuple[WorkItem, Description | None]], sink: OutcomeSink) -> None:
        """Each pending image's row or stage failure to ``sink`` (on the image workers, or here
        one by one). An error no image can escape is raised, and the chunk's images not yet
        started never start."""
        if self._workers is None or len(pending) == 1:
            for item, description in pending:
                sink(item, self._attempt(item, description))
            return
        self._workers.submit(self._attempt, pending, sink).wait()

    def _attempt(self, item: WorkItem, description: Description | None) -> Outcome:
        try:
            return self.enrich_one(item, description=description)
        except _StageFailure as failure:
            return failure
        finally:
            self.ahead.finished()

    def close(self) -> None:
        """Stop the image workers once their images are done (a later chunk starts new ones)."""
        if self._workers is not None:
            self._workers.close()

    def enrich_one(self, item: WorkItem, *, description: Description | None = None) -> dict[str, Any]:
        """Enrich one image into an assets row.

        Args:
            item: the image.
            description: a description obtained by an earlier attempt (not paid for again).

        Raises:
            _StageFailure: the image failed at one stage (read, prepare, describe, embed).
            FatalProviderError: no image can succeed.
            CatalogAccessError: the catalogue's storage refused the credentials or has no such bucket.
        """
        stage = "read"
        sha = item.content_sha256
        began = time.perf_counter()
        try:
            data = self.read(item.source_uri)
            # An image the plan did not read (a new id) is hashed here, once. One the plan
            # hashed keeps the plan's hash: a file changed since carries it, which the next
            # run's plan no longer matches, so it is enriched again.
            sha = sha or sha256_hex(data)
            stage = "prepare"
            facts, (for_describer, for_embedder) = prepare_images(
                data, [self.describer.image_limits, self.embedder.image_limits], content_sha256=sha,
            )
            del data
            self.ahead.prepared(time.perf_counter() - began)
            stage = "describe"
            if description is None:
                description = self.describer.describe(for_describer)
            stage = "embed"
            vector = self.embedder.embed_image(for_embedder)
        except (FatalProviderError, CatalogAccessError):
            raise  # no image can succeed: the credentials or the bucket are wrong
        except EnrichmentError as exc:
            raise _StageFailure(stage, exc, description, sha) from exc
        return asset_row(
            item, facts, description, vector, describer=self.describer, embedder=self.embedder, run_id=self.run_id,
            batch=self.batch,
        )


def asset_row(
    item: WorkItem,
    facts: SourceFacts,
    description: Description,
    vector: np.ndarray,
    *,
    describer: Describer,
    embedder: Embedder,
    run_id: str,
    batch: str | None = None,
) -> dict[str, Any]:
    """An image's assets row, however its description and vector were obtained (on demand or
    from a batch job): one place builds rows, so both ways write the same rows.

    Args:
        item: the image.
        facts: its source facts (``prepare_images``).
        description: its description and the tokens it cost.
        vector: its embedding.
        describer, embedder: the models whose ids and prompt version the row carries.
        run_id: the run writing the row.
        batch: the run's batch label, for an item whose manifest gives none.

    Returns:
        The row (a dict of the assets schema's columns).
    """
    meta = description.metadata
    return {
        "image_id": item.image_id,
        "source_uri": item.source_uri,
        "content_sha256": facts.content_sha256,
        "media_type": facts.media_type,
        "width": facts.width,
        "height": facts.height,
        "size_bytes": facts.size_bytes,
        "batch": item.batch or batch,
        "attributes": item.attributes,
        "title": meta.title,
        "description": meta.description,
        "keywords": meta.keywords,
        "tags": meta.tags,
        "ocr_texts": meta.ocr_texts,
        "embedding": vector.astype(np.float32, copy=False),  # into Arrow as one buffer (staging)
        "embedding_dim": int(vector.shape[0]),
        "enrichment_model": describer.model_id,
        "embedding_model": embedder.model_id,
        "prompt_version": describer.prompt_version,
        "input_tokens": description.input_tokens,
        "output_tokens": description.output_tokens,
        "run_id": run_id,
        "enriched_at": datetime.now(timezone.utc),
    }
