"""The library's run driver, without Prefect: plan, run chunks, stage, commit, summary.

Only the network is faked: the real boto3 client against the Bedrock-compatible server on loopback.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from PIL import Image

from media_enrichment.catalog import read_bytes
from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import DatasetLocationError
from media_enrichment.pipeline.driver import open_run, run_chunk
from media_enrichment.pipeline.execution import ChunkEnricher, ChunkResult, Executor
from media_enrichment.pipeline.plan import WorkItem, sha256_hex
from media_enrichment.pipeline.summary import RunSummary
from media_enrichment.providers import build_providers
from media_enrichment.testing import BedrockServer, FaultPlan
from tests.helpers import write_catalog

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1
TITAN = "amazon.titan-embed-image-v1"

#: Runs through the driver: against the loopback Bedrock server (1-7 s a test on 2 busy cores)
#: or with the local provider, whose OCR takes 1-3 s an image (18 s for the context test).
pytestmark = pytest.mark.slow


@pytest.fixture
def bedrock(aws_env):
    with BedrockServer() as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        yield server


def _claude_requests(server: BedrockServer) -> int:
    return server.counters.requests[CLAUDE]


def test_a_run_through_the_driver_alone(bedrock, tmp_path):
    manifest = write_catalog(tmp_path / "cat", 5)
    settings = Settings(provider="bedrock", dataset=str(tmp_path / "ds"), chunk_size=2, embedding_dim=256, commit_rows=3)
    with open_run(settings, str(manifest), "run-1", run_name="first") as run:
        plan = run.plan(run.load_catalog())
        assert len(plan.items) == 5 and plan.batch == "catalog"
        run.check_access(plan)
        chunks = run.chunks(plan)
        staged = [run.run_chunk(items) for items in chunks]
        versions = run.commit(staged, plan)
        summary = run.summary(plan, staged, versions, task_runner="inline")

    assert [len(c) for c in chunks] == [2, 2, 1]
    assert summary.enriched == 5 and summary.failed == 0 and summary.chunks == 3 and summary.task_runner == "inline"
    assert summary.enrichment_model == CLAUDE and summary.embedding_model == TITAN and summary.embedding_dim == 256
    assert summary.input_tokens > 0 and summary.estimated_cost_usd > 0
    assert summary.assets_version == 1, "chunks of 2, 2, 1 rows at most 3 per commit: parts of 2 and 3 rows"
    store = Dataset(tmp_path / "ds")
    history = {h["part"]: h for h in store.history()}
    assert {p: int(h["part_enriched"]) for p, h in history.items()} == {"1/2": 2, "2/2": 3}
    assert {h["flow_run_name"] for h in history.values()} == {"first"}
    assert sorted(store.read_assets()["image_id"]) == [f"img{i}" for i in range(5)]
    assert not list((tmp_path / "ds" / "_staging").rglob("*.parquet")), "committed chunks leave the staging area"
    # The flow's return value is the summary as data, and reads back as the same summary.
    assert RunSummary.from_dict(summary.as_dict()) == summary
    assert summary.as_dict()["retries"]["requests_per_call"] == 4 * 3

    calls = _claude_requests(bedrock)
    with open_run(settings, str(manifest), "run-2") as run:
        plan = run.plan(run.load_catalog())
        run.check_access(plan)
        again = run.summary(plan, [], run.commit([], plan))
    assert plan.reused == 5 and not plan.items and again.enriched == 0 and again.assets_version is None
    assert _claude_requests(bedrock) == calls, "nothing to enrich: not even an access check"


def test_a_chunk_whose_staging_failed_is_staged_later_without_calling_a_model(bedrock, tmp_path):
    manifest = write_catalog(tmp_path / "cat", 3)
    settings = Settings(provider="bedrock", dataset=str(tmp_path / "ds"), embedding_dim=256)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the staging area's parent should be")
    with open_run(settings, str(manifest), "run-1") as run:
        items = run.plan(run.load_catalog()).items
        job = dataclasses.replace(run.job, staging_dir=str(blocked / "staging"))  # the same run's job
        with pytest.raises(DatasetLocationError):
            run_chunk(job, items)
        calls = bedrock.counters.total
        assert _claude_requests(bedrock) == 3, "the chunk was enriched before its staging failed"

        blocked.unlink()  # the location is fixed; the chunk is tried again in this process
        staged = run_chunk(job, items)
    assert staged.enriched == 3 and Path(staged.assets_path).is_file()
    assert bedrock.counters.total == calls, "the second attempt staged the first one's result"


def _png_items(tmp_path: Path, count: int) -> list[WorkItem]:
    """``count`` distinct small PNGs in ``tmp_path`` as work items (named 0..count-1)."""
    paths = []
    for i in range(count):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 30), (240 * i // count, 30, 200)).save(paths[-1])
    return [WorkItem(image_id=p.stem, source_uri=str(p), content_sha256=sha256_hex(p.read_bytes())) for p in paths]


def _items_and_a_reader_that_breaks_once(tmp_path, count: int, *, broken: int):
    """``count`` distinct PNGs as work items, and a reader whose storage drops the connection
    once, on image ``broken`` (an error that is no image's own: it interrupts the chunk)."""
    items = _png_items(tmp_path, count)
    once = {items[broken].source_uri}

    def read(uri: str) -> bytes:
        if uri in once:
            once.discard(uri)
            raise ConnectionResetError("connection reset by peer")
        return read_bytes(uri)

    return items, read


def test_an_interrupted_chunk_resumes_without_calling_again_for_its_done_images(bedrock, tmp_path):
    items, read = _items_and_a_reader_that_breaks_once(tmp_path, 4, broken=2)
    describer, embedder = build_providers(Settings(provider="bedrock", embedding_dim=256))
    executor = ChunkEnricher(describer=describer, embedder=embedder, read=read, run_id="r")
    assert isinstance(executor, Executor)
    result = ChunkResult()
    with pytest.raises(ConnectionResetError):
        executor.enrich(items, result=result)
    assert [r["image_id"] for r in result.rows] == ["0", "1"], "rows are kept as they are made"

    executor.enrich(items, result=result)
    assert sorted(r["image_id"] for r in result.rows) == ["0", "1", "2", "3"] and not result.failures
    billed = bedrock.counters.billed_images
    assert sum(n for (model, _), n in billed.items() if model == CLAUDE) == 4
    assert max(billed.values()) == 1, "no image was described or embedded twice"


def test_an_interrupted_chunk_on_image_workers_keeps_its_rows_and_never_gives_an_image_twice(bedrock, tmp_path):
    items, read = _items_and_a_reader_that_breaks_once(tmp_path, 8, broken=5)
    describer, embedder = build_providers(Settings(provider="bedrock", embedding_dim=256))
    executor = ChunkEnricher(describer=describer, embedder=embedder, read=read, run_id="r", threads=3)
    result = ChunkResult()
    try:
        with pytest.raises(ConnectionResetError):
            executor.enrich(items, result=result)
        first = [r["image_id"] for r in result.rows]
        assert "5" not in first and len(first) == len(set(first))
        executor.enrich(items, result=result)
    finally:
        executor.close()
    ids = [r["image_id"] for r in result.rows]
    assert sorted(ids) == [str(i) for i in range(8)], "every image once: none lost, none twice"
    assert not result.failures


@pytest.mark.parametrize("cap", [None, 3])
def test_a_chunks_images_are_in_flight_together_as_the_models_windows_allow(aws_env, tmp_path, cap):
    """Calls in flight are governed by each model's window, not by the number of chunk tasks:
    one chunk of 40 images has many Claude calls in flight at once, never more than the cap."""
    manifest = write_catalog(tmp_path / "cat", 40)
    extra = {} if cap is None else {"concurrency": cap}
    settings = Settings(provider="bedrock", dataset=str(tmp_path / "ds"), chunk_size=40, embedding_dim=256, **extra)
    with BedrockServer(faults=FaultPlan(latency={"anthropic": 0.2})) as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        with open_run(settings, str(manifest), "run-w") as run:
            plan = run.plan(run.load_catalog())
            (items,) = run.chunks(plan)
            staged = run.run_chunk(items)
            stats = run.services.rate_control()
    assert staged.enriched == 40 and server.counters.requests[CLAUDE] == 40
    describer = stats["describer"]
    if cap is None:
        # The window started at 4 and doubled every round trip (no quota set: up to the cap).
        assert describer["max_in_flight"] == 32
        assert describer["peak_in_flight"] >= 12 and describer["highest_limit"] > 4
    else:
        assert describer["max_in_flight"] == 3 and describer["peak_in_flight"] == 3


def test_a_chunks_images_run_in_the_chunks_context(tmp_path):
    """An orchestrator's settings and run context are context variables: the pool threads that
    enrich a chunk's images see the chunk task's values (Prefect's rate limits need them)."""
    import contextvars

    from media_enrichment.providers.local import LocalDescriber, LocalEmbedder

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[str] = []
    items = _png_items(tmp_path, 6)

    def read(uri: str) -> bytes:
        seen.append(marker.get())
        return read_bytes(uri)

    executor = ChunkEnricher(describer=LocalDescriber(), embedder=LocalEmbedder(dim=256), read=read, run_id="r", threads=4)
    marker.set("chunk-task")
    try:
        result = executor.enrich(items)
    finally:
        executor.close()
    assert len(result.rows) == 6 and seen == ["chunk-task"] * 6


def test_a_chunk_prepares_more_images_ahead_when_preparing_one_is_slow(bedrock, tmp_path):
    """The enricher feeds its estimate with each image's reading-and-preparation time and each
    finish: a reader that takes 40 ms an image, against a service answering at once, keeps
    several images in preparation; an instant one two or three."""
    items = _png_items(tmp_path, 48)

    def slow_read(uri: str) -> bytes:
        time.sleep(0.04)
        return read_bytes(uri)

    ahead = {}
    for name, reader in (("instant", read_bytes), ("slow", slow_read)):
        describer, embedder = build_providers(Settings(provider="bedrock", embedding_dim=256))
        executor = ChunkEnricher(describer=describer, embedder=embedder, read=reader, run_id="r", threads=16)
        try:
            result = executor.enrich(items)
        finally:
            executor.close()
        assert len(result.rows) == 48 and not result.failures
        ahead[name] = executor.ahead()
    assert ahead["instant"] <= 3 and ahead["slow"] >= 4 and ahead["slow"] > ahead["instant"], ahead
