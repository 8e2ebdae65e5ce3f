"""Artifacts a run leaves in Prefect: progress, summary, failures, heatmap link; versioned by key."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.pipeline.summary import RunSummary
from media_enrichment.report import artifact_key, summary_markdown


def _artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    return asyncio.run(read())


def test_artifact_keys_are_valid_readable_and_distinct_per_dataset():
    key = artifact_key("summary", "s3://Bucket/Enriched_Data/")
    assert re.fullmatch(r"summary-s3-bucket-enriched-data-[0-9a-f]{8}", key), key
    # Locations whose readable parts agree still get their own artifacts.
    assert artifact_key("summary", "s3://a/b") != artifact_key("summary", "s3://a-b")
    assert artifact_key("summary", "data/ds") != artifact_key("progress", "data/ds")
    long_key = artifact_key("summary", "/very/" + "deep/" * 60 + "dataset")
    assert long_key.startswith("summary-") and len(long_key) <= len("summary-") + 40 + 9
    for weird in ("/", "ÄÖÜ", "s3://x/../y", "C:\\data"):
        assert re.fullmatch(r"[a-z0-9-]+", artifact_key("failures", weird)), weird
    summary = RunSummary(run_id="r", source="m.csv", dataset="ds", enriched=3, estimated_cost_usd=0.01234)
    text = summary_markdown(summary, heatmap_uri="file:///h.png")
    assert "| Enriched | 3 |" in text and "0.0123" in text and "(file:///h.png)" in text


def test_runs_publish_versioned_artifacts(sample_manifest, enriched_sample):
    root = enriched_sample.root
    before = len(_artifacts(artifact_key("summary", root)))
    assert before >= 1, "the enriching run published a summary"
    again = enrich_catalog(source=str(sample_manifest), dataset=root, embedding_dim=256)
    summaries = _artifacts(artifact_key("summary", root))
    assert len(summaries) == before + 1, "each run adds a version under the same key"
    latest = max(summaries, key=lambda a: a.created)
    assert "Reused (already enriched)" in latest.data and f"| {again['reused']} |" in latest.data

    progress = max(_artifacts(artifact_key("progress", root)), key=lambda a: a.created)
    assert progress.type == "progress" and float(progress.data) == 100.0

    link = max(_artifacts(artifact_key("heatmap", root)), key=lambda a: a.created)
    heatmap = Path(urlparse(re.search(r"\((file:[^)]+)\)", link.data).group(1)).path)
    assert heatmap.is_file() and Image.open(heatmap).size[0] > 300
    assert again["heatmap"] == heatmap.as_uri(), "a run that changed nothing links the existing heatmap"


@pytest.mark.usefixtures("prefect_harness")
def test_failures_table_artifact(tmp_path):
    Image.new("RGB", (40, 30), "green").save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = str(tmp_path / "ds")
    enrich_catalog(source=str(tmp_path), dataset=dataset)
    table = max(_artifacts(artifact_key("failures", dataset)), key=lambda a: a.created)
    assert table.type == "table" and "bad.png" in table.data and "prepare" in table.data
