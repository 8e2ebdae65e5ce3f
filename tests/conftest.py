"""Shared fixtures. Prefect runs against one temporary server for the whole session."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: no telemetry, quiet logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server and database for every flow test of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_manifest(tmp_path_factory) -> Path:
    """The project's generated sample catalogue (generated once per session, read-only)."""
    from media_enrichment.sample import generate_sample_catalog

    return generate_sample_catalog(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def enriched_sample(prefect_harness, sample_manifest, tmp_path_factory):
    """The sample catalogue enriched once per session (local provider, 256 dims); read-only."""
    from flows.enrich import enrich_catalog
    from media_enrichment.dataset import Dataset

    root = tmp_path_factory.mktemp("enriched-sample") / "ds"
    summary = enrich_catalog(source=str(sample_manifest), dataset=str(root), chunk_size=16, embedding_dim=256)
    assert summary["failed"] == 0
    return Dataset(root)
