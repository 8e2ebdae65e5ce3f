"""A run killed after half its chunks: the next run reuses their staged results."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.dataset import Dataset
from media_enrichment.images import CLAUDE_LIMITS, prepare_image
from media_enrichment.testing import BedrockServer, FaultPlan

pytestmark = pytest.mark.usefixtures("prefect_harness")

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1


def _sent_digest(path: str) -> str:
    """The sha256 of the bytes the describer sends for an image (what the server counts)."""
    return hashlib.sha256(prepare_image(Path(path).read_bytes(), CLAUDE_LIMITS).data).hexdigest()


def test_sigkill_after_half_the_chunks_then_resume(sample_manifest, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    dataset = tmp_path / "ds"
    staging = dataset / "_staging"
    catalog = pd.read_csv(sample_manifest, dtype=str, keep_default_na=False)
    chunk_size = 4
    chunks = -(-len(catalog) // chunk_size)

    with BedrockServer(faults=FaultPlan(latency={"anthropic": 0.4})) as server:
        env = {**os.environ, **server.env(), "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "120"}
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        process = subprocess.Popen(
            [sys.executable, "-m", "media_enrichment_prefect.cli", "run", str(sample_manifest), "--provider", "bedrock",
             "--dataset", str(dataset), "--chunk-size", str(chunk_size), "--concurrency", "2"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while len(list(staging.rglob("*.parquet"))) < chunks // 2:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the run staged nothing in time"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

        assert Dataset(str(dataset)).version() is None, "killed before its commit"
        staged_ids = {
            i for path in staging.rglob("*.parquet") for i in pq.read_table(path, columns=["image_id"]).column(0).to_pylist()
        }
        assert len(staged_ids) >= (chunks // 2) * chunk_size

        summary = enrich_catalog(source=str(sample_manifest), dataset=str(dataset), provider="bedrock", chunk_size=chunk_size)
        billed = server.counters.billed_images

    rows = Dataset(str(dataset)).read_assets()
    assert sorted(rows["image_id"]) == sorted(catalog["image_id"]) and rows["image_id"].is_unique
    assert summary["enriched"] == len(catalog) and summary["assets_version"] == 0
    paths = dict(zip(rows["image_id"], rows["source_uri"]))
    for image_id in staged_ids:
        assert billed[(CLAUDE, _sent_digest(paths[image_id]))] == 1, f"{image_id} was described again"
    assert not list(staging.rglob("*.parquet")), "staging is cleaned after the commit"
