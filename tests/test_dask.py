"""Chunk tasks on Dask: prefect-dask's DaskTaskRunner with a local cluster of worker processes.

A worker is another process, as it would be on another machine: the chunk task receives a
picklable ChunkJob and builds the run's clients there. Only the network is faked (the Bedrock
test server on loopback).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError
from media_enrichment.testing import BedrockServer, FaultPlan
from media_enrichment.pipeline.driver import ChunkJob, release_services, services_for


@pytest.fixture
def two_workers(monkeypatch):
    """The local Dask cluster's size, a setting of the process that runs the flow."""
    monkeypatch.setenv("MEDIA_ENRICH_DASK_WORKERS", "2")


def _worker_pids(summary) -> set[int]:
    return {int(w.rsplit(":", 1)[1]) for w in summary["workers"]}


@pytest.mark.usefixtures("prefect_harness")
def test_chunks_run_in_dask_worker_processes_and_write_what_threads_write(
    sample_manifest, enriched_sample, tmp_path, two_workers
):
    summary = enrich_catalog(
        source=str(sample_manifest), dataset=str(tmp_path / "ds"), chunk_size=4, concurrency=4, embedding_dim=256,
        task_runner="dask",
    )

    assert summary["task_runner"] == "DaskTaskRunner"
    pids = _worker_pids(summary)
    assert pids and os.getpid() not in pids, "chunk tasks ran in worker processes, not in the flow's"
    ids = sorted(pd.read_csv(sample_manifest, dtype=str)["image_id"])
    assert summary["enriched"] == len(ids) and summary["failed"] == 0 and summary["chunks"] == len(ids) // 4
    rows = Dataset(tmp_path / "ds").read_assets().set_index("image_id").sort_index()
    assert list(rows.index) == ids
    # The same rows as the session's thread-pool run of the same catalogue (deterministic provider).
    reference = enriched_sample.read_assets().set_index("image_id").sort_index()
    assert (rows["title"] == reference["title"]).all() and (rows["batch"] == reference["batch"]).all()
    assert all((a == b).all() for a, b in zip(rows["embedding"], reference["embedding"]))


@pytest.mark.usefixtures("prefect_harness")
def test_bedrock_on_dask_workers_calls_each_model_once_per_image(sample_manifest, tmp_path, aws_env, two_workers):
    with BedrockServer() as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)  # before the cluster starts: its workers inherit them
        summary = enrich_catalog(
            source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", chunk_size=8,
            concurrency=4, embedding_dim=384, task_runner="dask",
        )
        billed = server.counters.billed_images
    ids = sorted(pd.read_csv(sample_manifest, dtype=str)["image_id"])
    assert os.getpid() not in _worker_pids(summary)
    assert summary["enriched"] == len(ids) and summary["failed"] == 0
    assert max(billed.values()) == 1, "no image was described or embedded twice"
    assert Counter(model for model, _ in billed).most_common()[-1][1] >= len(ids)
    rows = Dataset(tmp_path / "ds").read_assets()
    assert sorted(rows["image_id"]) == ids and all(len(v) == 384 for v in rows["embedding"])


@pytest.mark.usefixtures("prefect_harness")
def test_rate_limits_on_dask_are_shared_by_the_worker_processes(sample_manifest, tmp_path, aws_env, two_workers):
    """Two worker processes, each limited to 120 rpm through the same Prefect global limits: the
    server's quota (12 requests in any 4 s per model, 180 rpm) is never exceeded. Two separate
    token buckets of 120 rpm would send up to twice that."""
    with BedrockServer(faults=FaultPlan(rpm_quota=180, quota_window_s=4)) as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        for key, value in {
            "SHARED_RATE_LIMITS": "true", "DESCRIBER_RPM": "120", "EMBEDDER_RPM": "120", "AWS_REGION": "eu-dask-1",
            "BEDROCK_MAX_ATTEMPTS": "1",  # a quota refusal would show as a failed image, not be retried away
        }.items():
            aws_env.setenv(f"MEDIA_ENRICH_{key}", value)
        summary = enrich_catalog(
            source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", chunk_size=4,
            concurrency=4, embedding_dim=256, limit=16, task_runner="dask",
        )
        outcomes = server.counters.outcomes
    assert len({int(w.rsplit(":", 1)[1]) for w in summary["workers"]}) == 2, "both workers ran chunks"
    assert summary["enriched"] == 16 and summary["failed"] == 0
    assert outcomes.get("quota", 0) == 0 and outcomes["ok"] >= 32


def test_dask_refuses_per_process_rate_limits():
    with pytest.raises(ValidationError, match="SHARED_RATE_LIMITS"):
        Settings(task_runner="dask", provider="bedrock", describer_rpm=100)
    assert Settings(task_runner="dask", provider="bedrock", describer_rpm=100, shared_rate_limits=True).describer_rpm == 100
    assert Settings(task_runner="threads", provider="bedrock", describer_rpm=100).shared_rate_limits is False


def test_services_are_built_once_per_run_and_check_the_planned_versions(tmp_path: Path):
    settings = Settings(embedding_dim=256)
    job = ChunkJob(settings=settings, run_id="r1", versions=None, staging_dir=tmp_path, reads_s3=False)
    try:
        first = services_for(job)
        assert services_for(job) is first, "the chunk tasks of a process share one set of clients"
        planned = first.versions
        assert services_for(ChunkJob(settings=settings, run_id="r1", versions=planned, staging_dir=tmp_path, reads_s3=False)) is first
        other = ChunkJob(settings=settings, run_id="r2", versions=None, staging_dir=tmp_path, reads_s3=False)
        assert services_for(other) is not first
        release_services(other)

        elsewhere = dataclasses.replace(planned, prompt_version="another-prompt")
        with pytest.raises(ConfigError, match="another-prompt"):
            services_for(ChunkJob(settings=settings, run_id="r1", versions=elsewhere, staging_dir=tmp_path, reads_s3=False))
    finally:
        release_services(job)


def test_cli_runs_chunks_on_dask_and_refuses_unshared_limits(cli, sample_manifest, tmp_path):
    refused = cli(
        "run", str(sample_manifest), "--dataset", str(tmp_path / "refused"), "--provider", "bedrock",
        "--task-runner", "dask", cwd=tmp_path, MEDIA_ENRICH_DESCRIBER_RPM="100",
    )
    assert refused.returncode == 1 and "SHARED_RATE_LIMITS" in refused.stdout, refused.stdout + refused.stderr
    assert not (tmp_path / "refused").exists()

    done = cli(
        "run", str(sample_manifest), "--dataset", str(tmp_path / "ds"), "--limit", "8", "--chunk-size", "4",
        "--embedding-dim", "256", "--task-runner", "dask", "--dask-workers", "2", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DaskTaskRunner" in done.stdout
    assert len(Dataset(tmp_path / "ds").read_assets()) == 8
