"""A run's budget: ``max_images`` and ``max_cost_usd`` stop a run cleanly, what finished is committed."""

from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.pipeline.driver import open_run
from media_enrichment.pipeline.submit import run_windowed
from tests.helpers import write_catalog


def _catalog(folder: Path, count: int) -> Path:
    return write_catalog(folder, count, size=(48, 32), colour=lambda i: (25 * i, 120, 230 - 20 * i))


def _run(settings: Settings, manifest: Path, run_id: str):
    """The flow's steps without Prefect: chunks submitted through ``run_windowed`` on threads."""
    with open_run(settings, str(manifest), run_id) as run, ThreadPoolExecutor(4) as pool:
        plan = run.plan(run.load_catalog())
        staged = run_windowed(
            run.chunks(plan),
            submit=lambda items: pool.submit(run.run_chunk, items),
            next_done=lambda futures: next(iter(wait(futures, return_when=FIRST_COMPLETED).done)),
            result=lambda future: future.result(),
            window=settings.chunks_in_flight,
            budget=run.budget,
        )
        return run.summary(plan, staged, run.commit(staged, plan)), run.budget


@pytest.mark.slow  # runs with the local provider: its OCR takes 1-3 s an image (30-60 s)
def test_max_images_enriches_that_many_and_leaves_the_rest_for_the_next_run(tmp_path):
    manifest = _catalog(tmp_path / "cat", 10)
    settings = Settings(dataset=str(tmp_path / "ds"), chunk_size=3, max_images=4, embedding_dim=256)
    summary, _ = _run(settings, manifest, "run-1")
    assert (summary.enriched, summary.deferred) == (4, 6)
    assert summary.stopped == "max_images: 4 of the 10 images to enrich"
    assert len(Dataset(tmp_path / "ds").read_assets()) == 4, "what finished is committed"

    summary, _ = _run(settings, manifest, "run-2")
    assert (summary.reused, summary.enriched, summary.deferred) == (4, 4, 2)
    summary, _ = _run(settings, manifest, "run-3")
    assert (summary.reused, summary.enriched, summary.deferred, summary.stopped) == (8, 2, 0, None)


@pytest.mark.slow  # runs with the local provider: its OCR takes 1-3 s an image (30-60 s)
def test_max_cost_stops_submitting_before_the_budget_is_passed(tmp_path):
    manifest = _catalog(tmp_path / "cat", 10)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"local/": {"per_image": 0.5}}))  # the local provider, priced per image
    settings = Settings(
        dataset=str(tmp_path / "ds"), chunk_size=2, chunk_tasks=4, max_cost_usd=2.6, price_file=prices,
        embedding_dim=256,
    )
    summary, budget = _run(settings, manifest, "run-1")
    # Chunks of 2 images at $0.50 each: a third chunk in flight would have been expected to pass
    # $2.60 whatever the order the first two finished in, and so would a third after them.
    assert summary.enriched == 4 and summary.estimated_cost_usd == pytest.approx(2.0)
    assert budget.spent_usd == pytest.approx(2.0)
    assert summary.deferred == 6 and summary.stopped.startswith("max_cost_usd: $2.0000 spent")
    assert len(Dataset(tmp_path / "ds").read_assets()) == 4

    wide = settings.model_copy(update={"max_cost_usd": 100.0})
    summary, _ = _run(wide, manifest, "run-2")
    assert (summary.reused, summary.enriched, summary.stopped, summary.deferred) == (4, 6, None, 0)


def test_budget_settings_are_checked():
    with pytest.raises(ValueError):
        Settings(max_cost_usd=0)
    with pytest.raises(ValueError):
        Settings(max_images=0)
