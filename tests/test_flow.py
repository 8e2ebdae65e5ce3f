"""The enrichment flow end to end on the local provider, under a temporary Prefect server."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.dataset import Dataset
from media_enrichment.schema import ASSETS_SCHEMA

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def catalog_copy(sample_manifest, tmp_path):
    """A private copy of the sample catalogue that a test may add to."""
    folder = tmp_path / "catalog"
    shutil.copytree(sample_manifest.parent, folder)
    return folder / sample_manifest.name


def test_runs_are_incremental(catalog_copy, tmp_path):
    dataset = str(tmp_path / "ds")
    manifest = pd.read_csv(catalog_copy, dtype=str, keep_default_na=False)

    first = enrich_catalog(source=str(catalog_copy), dataset=dataset, chunk_size=8, concurrency=3, embedding_dim=256)
    assert first["assets_version"] == 0
    assert first["enriched"] == len(manifest) and first["failed"] == 0
    store = Dataset(dataset)
    rows = store.read_assets()
    assert sorted(rows["image_id"]) == sorted(manifest["image_id"])
    assert list(rows.columns) == ASSETS_SCHEMA.names
    assert set(rows["embedding_dim"]) == {256} and all(len(v) == 256 for v in rows["embedding"])
    assert all("local" in m for m in set(rows["enrichment_model"]) | set(rows["embedding_model"]))
    assert set(rows["run_id"]) == {first["run_id"]}
    assert first["estimated_cost_usd"] == 0
    commit = store.history()[0]
    assert commit["run_id"] == first["run_id"] and commit["prompt_version"] == first["prompt_version"]
    assert int(commit["enriched"]) == len(manifest)
    assert json.loads(rows["attributes"].iloc[0]).keys() >= {"theme"}
    assert not any((tmp_path / "ds" / "_staging").rglob("*.parquet")), "staging is cleaned after the commit"

    second = enrich_catalog(source=str(catalog_copy), dataset=dataset, chunk_size=8, embedding_dim=256)
    assert second["enriched"] == 0 and second["reused"] == len(manifest) and second["chunks"] == 0
    assert second["assets_version"] is None and store.version() == 0

    new_ids = []
    for i, colour in enumerate([(250, 10, 10), (10, 250, 10), (10, 10, 250)]):
        Image.new("RGB", (300, 200), colour).save(catalog_copy.parent / f"new-{i}.png")
        new_ids.append(f"new-{i}")
    extra = pd.DataFrame({"image_id": new_ids, "path": [f"new-{i}.png" for i in range(3)]})
    pd.concat([manifest, extra]).to_csv(catalog_copy, index=False)

    third = enrich_catalog(source=str(catalog_copy), dataset=dataset, chunk_size=8, embedding_dim=256)
    assert third["enriched"] == 3 and third["reused"] == len(manifest)
    assert third["assets_version"] == 1
    rows = store.read_assets()
    assert sorted(rows.loc[rows["run_id"] == third["run_id"], "image_id"]) == new_ids
    assert len(rows) == len(manifest) + 3 and rows["image_id"].is_unique


def test_sample_near_duplicates_are_nearest_neighbours(enriched_sample):
    rows = enriched_sample.read_assets(columns=["image_id", "embedding", "attributes"])
    origin = {
        r.image_id: (json.loads(r.attributes).get("variant_of") or r.image_id) for r in rows.itertuples()
    }
    vectors = np.stack(rows["embedding"].to_numpy()).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    ids = list(rows["image_id"])
    variants = [i for i in ids if origin[i] != i]
    assert len(variants) >= 4
    for image_id in variants:
        nearest = ids[int(np.argmax(similarity[ids.index(image_id)]))]
        assert origin[nearest] == origin[image_id], f"{image_id}: nearest is {nearest}"


def test_bad_images_become_failures_and_are_retried(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image_id,path\ngood,imgs/good.png\nempty,imgs/empty.jpg\nnotes,imgs/notes.jpg\nmissing,imgs/missing.png\n"
    )
    dataset = str(tmp_path / "ds")
    summary = enrich_catalog(source=str(manifest), dataset=dataset)
    assert summary["enriched"] == 1 and summary["failed"] == 3
    store = Dataset(dataset)
    failures = store.read_failures().set_index("image_id")
    assert sorted(failures.index) == ["empty", "missing", "notes"]
    assert failures.loc["missing", "stage"] == "read" and "not found" in failures.loc["missing", "message"]
    assert failures.loc["empty", "stage"] == "prepare" and "empty" in failures.loc["empty", "message"].lower()
    assert failures.loc["notes", "stage"] == "prepare"

    assert failures.loc["empty", "permanent"] and not failures.loc["missing", "permanent"]

    Image.new("RGB", (64, 48), (200, 20, 20)).save(folder / "missing.png")
    again = enrich_catalog(source=str(manifest), dataset=dataset)
    # The file that appeared is enriched; the undecodable ones (same bytes) are left alone.
    assert again["enriched"] == 1 and again["reused"] == 1 and again["failed"] == 0 and again["given_up"] == 2
    failures = store.read_failures().set_index("image_id")
    assert sorted(failures.index) == ["empty", "notes"] and set(failures["attempts"]) == {1}
    assert sorted(store.read_assets()["image_id"]) == ["good", "missing"]

    forced = enrich_catalog(source=str(manifest), dataset=dataset, retry_failures=True)
    assert forced["failed"] == 2 and forced["given_up"] == 0
    assert set(store.read_failures()["attempts"]) == {2}

    Image.new("RGB", (64, 48), (9, 9, 9)).save(folder / "notes.jpg", format="PNG")  # the file is fixed
    fixed = enrich_catalog(source=str(manifest), dataset=dataset)
    assert fixed["enriched"] == 1 and fixed["given_up"] == 1
    assert list(store.read_failures()["image_id"]) == ["empty"]


def test_large_runs_commit_in_bounded_parts(sample_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_ENRICH_COMMIT_ROWS", "4")
    dataset = str(tmp_path / "ds")
    summary = enrich_catalog(source=str(sample_manifest), dataset=dataset, chunk_size=2, limit=12, embedding_dim=256)
    store = Dataset(dataset)
    assert summary["enriched"] == 12 and summary["assets_version"] == 2
    assert [h["part"] for h in reversed(store.history())] == ["1/3", "2/3", "3/3"]
    assert {h["run_id"] for h in store.history()} == {summary["run_id"]}
    rows = store.read_assets()
    assert len(rows) == 12 and rows["image_id"].is_unique
