"""Deployments served from deployments/prefect.yaml on a real local Prefect server; backfills."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from media_enrichment_prefect.flows.backfill import batch_labels, batch_source, idempotency_key
from media_enrichment.dataset import Dataset

REPO = Path(__file__).resolve().parent.parent


def test_batch_labels():
    assert batch_labels(start=date(2026, 10, 30), end=date(2026, 11, 1)) == ["2026-10-30", "2026-10-31", "2026-11-01"]
    assert batch_labels(batches=["b", "a", "b"]) == ["b", "a"]
    for bad in ({}, {"batches": ["a"], "start": date(2026, 1, 1)}, {"start": date(2026, 1, 2), "end": date(2026, 1, 1)}):
        with pytest.raises(ValueError):
            batch_labels(**bad)
    assert batch_source("s3://b/in/{batch}/", "2026-11-01") == "s3://b/in/2026-11-01/"
    key = idempotency_key(deployment="d", dataset="x", source="s", batch="1")
    assert key == idempotency_key(deployment="d", dataset="x", source="s", batch="1") != idempotency_key(
        deployment="d", dataset="x", source="s", batch="2"
    )


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_served_schedule_and_idempotent_backfill(cli, prefect_server, sample_manifest, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "home"), COLUMNS="200")
    dataset = tmp_path / "ds"
    manifest = pd.read_csv(sample_manifest, dtype=str, keep_default_na=False).head(6)
    manifest["path"] = [str(sample_manifest.parent / p) for p in manifest["path"]]
    manifest["batch"] = ["b1"] * 3 + ["b2"] * 3
    manifest.to_csv(tmp_path / "batches.csv", index=False)

    served = subprocess.Popen(
        [sys.executable, "-m", "media_enrichment_prefect.cli", "serve", "--file", str(REPO / "deployments" / "prefect.yaml"),
         "--dataset", str(dataset)],
        # What the deployments leave out, their runs take from the serving process's environment.
        # batches.csv (in tmp_path) points into the sample's folder: a root the runs must be allowed to read.
        env={**env, "MEDIA_ENRICH_EMBEDDING_DIM": "256", "MEDIA_ENRICH_ALLOWED_ROOTS": str(sample_manifest.parent)},
        cwd=tmp_path, stdout=open(tmp_path / "serve.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        names = ("enrich-catalog/nightly", "enrich-catalog/backfill", "backfill-catalog/backfill-launcher")

        def registered_here(name: str) -> bool:  # by this serve process (another test may have served them before)
            found = _get(f"{prefect_server}/deployments/name/{name}")
            return found is not None and found["parameters"].get("dataset") == str(dataset)

        while not all(registered_here(name) for name in names):
            assert served.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the deployments were not registered"
            time.sleep(0.5)
        nightly = _get(f"{prefect_server}/deployments/name/enrich-catalog/nightly")
        schedule = nightly["schedules"][0]["schedule"]
        assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "Europe/Paris"
        assert nightly["parameters"]["dataset"] == str(dataset)

        first = cli("backfill", str(tmp_path / "batches.csv"), "-b", "b1", "-b", "b2", "-d", str(dataset), cwd=tmp_path, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        run_ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", first.stdout)
        assert len(run_ids) == 2
        again = cli("backfill", str(tmp_path / "batches.csv"), "-b", "b1", "-b", "b2", "-d", str(dataset), cwd=tmp_path, timeout=300)
        assert sorted(re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", again.stdout)) == sorted(run_ids)

        deadline = time.monotonic() + 240
        while True:
            states = [(_get(f"{prefect_server}/flow_runs/{i}") or {}).get("state", {}).get("type") for i in run_ids]
            if all(s == "COMPLETED" for s in states):
                break
            assert not any(s in ("FAILED", "CRASHED") for s in states), (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"backfill runs did not finish: {states}"
            time.sleep(1)
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=30)

    rows = Dataset(str(dataset)).read_assets()
    assert sorted(rows["image_id"]) == sorted(manifest["image_id"])
    assert dict(rows.groupby("batch").size()) == {"b1": 3, "b2": 3}
    assert set(rows["embedding_dim"]) == {256}, "the served runs used the serving process's MEDIA_ENRICH_*"
    assert len(Dataset(str(dataset)).history()) == 2, "one commit per batch run"


def test_deployed_to_a_process_work_pool_and_run_by_a_worker(prefect_server, sample_manifest, tmp_path):
    """`prefect deploy` of deployments/prefect.yaml, a process worker elsewhere (its own process,
    started in another folder, finding the project through MEDIA_ENRICH_PROJECT_DIR), one run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MEDIA_ENRICH_"))}
    env.update(PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "home"), COLUMNS="200")
    prefect = [sys.executable, "-m", "prefect"]

    def prefect_cli(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([*prefect, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    prefect_cli("work-pool", "create", "media-enrichment", "--type", "process", "--overwrite")
    prefect_cli("--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "backfill")
    deployment = _get(f"{prefect_server}/deployments/name/enrich-catalog/backfill")
    assert deployment["work_pool_name"] == "media-enrichment" and deployment["work_queue_name"] == "backfill"

    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    worker = subprocess.Popen(
        [*prefect, "worker", "start", "--pool", "media-enrichment", "--type", "process"],
        env={**env, "MEDIA_ENRICH_PROJECT_DIR": str(REPO), "MEDIA_ENRICH_EMBEDDING_DIM": "384"}, cwd=worker_dir,
        stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    dataset = tmp_path / "ds"
    try:
        run = prefect_cli(
            "deployment", "run", "enrich-catalog/backfill", "--param", f"source={sample_manifest}",
            "--param", f"dataset={dataset}", "--param", "limit=8", "--param", "batch=pool",
            "--watch", "--watch-timeout", "300", cwd=tmp_path, timeout=360,
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # A worker's graceful shutdown can outlast a minute on a busy 2-core machine (seen on
            # a fresh clone under two xdist workers); what this test checks is the run, below.
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
    assert "Completed" in run.stdout, run.stdout + (tmp_path / "worker.log").read_text()[-3000:]
    rows = Dataset(str(dataset)).read_assets()
    assert len(rows) == 8 and set(rows["batch"]) == {"pool"}
    assert set(rows["embedding_dim"]) == {384}, "the deployed run used the worker's MEDIA_ENRICH_*"
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout).group(1)
    assert set(rows["run_id"]) == {flow_run_id}, "the rows were written by the worker's flow run"
