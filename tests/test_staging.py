"""Staging under concurrent runs, half-written entries, and a dataset location checked first."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import DatasetLocationError
from media_enrichment.pipeline.driver import open_run
from media_enrichment.pipeline.execution import ChunkResult
from media_enrichment.pipeline.staging import (
    assets_table,
    chunk_key,
    commit_staged,
    find_staged,
    remove_staged,
    stage_chunk,
    staged_failures,
    staged_image_ids,
)


def _summary_value(output: str, name: str) -> str:
    match = re.search(rf"│ {name}\s+│ (\S+)", output)
    assert match, f"no {name} in the run's summary:\n{output}"
    return match.group(1)


def test_two_cli_runs_at_once_on_a_new_dataset(cli, sample_manifest, tmp_path):
    """Both stage the same chunks (same images, same models); one commits and removes its files
    while the other may still be using them. Both succeed, every image is stored once. Both runs
    report to the one Prefect server, as two users' runs would."""
    dataset = tmp_path / "ds"
    count = 16
    args = (
        "run", str(sample_manifest), "--dataset", str(dataset),
        "--limit", str(count), "--chunk-size", "2", "--concurrency", "2", "--embedding-dim", "256",
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: cli(*args, cwd=tmp_path, timeout=900), range(2)))
    outputs = [run.stdout + run.stderr for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output

    # Each run planned all of them, so neither started after the other had committed: they raced.
    for output in outputs:
        assert _summary_value(output, "reused") == "0" and _summary_value(output, "enriched") == str(count), output
    rows = Dataset(str(dataset)).read_assets(columns=["image_id", "run_id"])
    expected = sorted(pd.read_csv(sample_manifest, dtype=str)["image_id"])[:count]
    assert sorted(rows["image_id"]) == expected and rows["image_id"].is_unique
    assert set(rows["run_id"]) <= {_summary_value(o, "run_id") for o in outputs}
    assert not list((dataset / "_staging").rglob("*.parquet")), "each run removes what it wrote or committed"
    assert Dataset(str(dataset)).read_failures().empty


def _row(image_id: str, run_id: str = "r") -> dict:
    from datetime import datetime, timezone

    return {
        "image_id": image_id, "source_uri": f"/in/{image_id}.png", "content_sha256": "0" * 64, "media_type": "image/png",
        "width": 4, "height": 3, "size_bytes": 10, "batch": "b", "attributes": None, "title": f"T {image_id}",
        "description": "d", "keywords": ["k"], "tags": ["t"], "ocr_texts": [], "embedding": [0.6, 0.8],
        "embedding_dim": 2, "enrichment_model": "m", "embedding_model": "e", "prompt_version": "p",
        "input_tokens": 7, "output_tokens": 3, "run_id": run_id, "enriched_at": datetime.now(timezone.utc),
    }


def _failure(image_id: str) -> dict:
    from datetime import datetime, timezone

    return {
        "image_id": image_id, "source_uri": f"/in/{image_id}.png", "content_sha256": None, "stage": "prepare",
        "error_type": "ImageError", "message": "bad", "attempts": 1, "permanent": True, "run_id": "r",
        "at": datetime.now(timezone.utc),
    }


def test_writers_of_one_chunk_never_collide_and_a_vanished_file_is_left_out(tmp_path):
    dataset = Dataset(tmp_path / "ds")
    staging = dataset.staging_dir
    first = stage_chunk(ChunkResult(rows=[_row("a"), _row("b")], failures=[_failure("x")]), staging_dir=staging, key="k1", run_id="run-a")
    second = stage_chunk(ChunkResult(rows=[_row("a"), _row("b")], failures=[_failure("x")]), staging_dir=staging, key="k1", run_id="run-b")
    assert first.assets_path != second.assets_path, "two writers of one chunk write two files"
    assert sorted(p.name for p in (Path(staging) / "k1").iterdir()) == sorted(Path(c.assets_path).name for c in (first, second))
    assert Path(first.assets_path).parent.name == "k1", "a folder per key: a look-up lists that key's files only"
    assert Path(first.assets_path).name.startswith("run-a-") and first.writer.startswith("run-a-")
    assert (first.enriched, first.failed, first.input_tokens, first.output_tokens) == (2, 1, 14, 6)
    assert find_staged(staging_dir=staging, key="k1") in (first, second), "any complete entry is reused, whoever wrote it"

    remove_staged([first])  # run-a committed its file: run-b's is untouched
    assert find_staged(staging_dir=staging, key="k1") == second
    remove_staged([first])  # a file already gone is fine
    assert (Path(staging) / "k1").is_dir(), "a key folder another writer still uses stays"

    third = stage_chunk(ChunkResult(rows=[_row("c")]), staging_dir=staging, key="k2", run_id="run-b")
    remove_staged([second])  # another run committed and removed a file run-b was going to commit
    assert staged_image_ids([second, third]) == ["c"]
    assert staged_failures([second, third]).num_rows == 0
    assert commit_staged(dataset, [second, third], metadata={"run_id": "run-b"}) == 0
    assert list(dataset.read_assets()["image_id"]) == ["c"]
    assert commit_staged(dataset, [second], metadata={"run_id": "run-b"}) is None, "nothing left to commit"
    remove_staged([third])
    assert not any(Path(staging).iterdir()), "key folders left empty are removed"
    again = stage_chunk(ChunkResult(rows=[_row("c")]), staging_dir=staging, key="k2", run_id="run-c")
    assert find_staged(staging_dir=staging, key="k2") == again, "a removed key folder is made again"


def test_half_written_entries_are_ignored_and_removed(tmp_path):
    staging = Dataset(tmp_path / "ds").staging_dir
    folder = Path(staging) / "k1"
    # An older layout's failure mode: rows staged, the failures file never written.
    folder.mkdir(parents=True)
    pq.write_table(assets_table([_row("a")]), folder / "assets.parquet")
    # A file cut short, and one empty.
    whole = stage_chunk(ChunkResult(rows=[_row("a")]), staging_dir=staging, key="k1", run_id="dead")
    data = Path(whole.assets_path).read_bytes()
    Path(whole.assets_path).write_bytes(data[: len(data) // 2])
    (folder / "empty.parquet").write_bytes(b"")
    assert find_staged(staging_dir=staging, key="k1") is None
    assert not list(folder.glob("*.parquet")), "not a complete entry: deleted, never a dead end"


@pytest.mark.usefixtures("prefect_harness")
def test_a_forced_run_repairs_half_written_entries(sample_manifest, tmp_path):
    """Half-written entries of the chunks a --force run stages are passed over (and removed),
    not reused and not a failure."""
    dataset = tmp_path / "ds"
    enrich_catalog(source=str(sample_manifest), dataset=str(dataset), chunk_size=2, limit=4, embedding_dim=256)
    stored = Dataset(str(dataset)).read_assets().sort_values("image_id")
    settings = Settings(dataset=str(dataset), chunk_size=2, limit=4, embedding_dim=256, force=True)
    with open_run(settings, str(sample_manifest), "probe") as run:  # the chunks the forced run stages
        keys = [chunk_key(chunk, run.versions) for chunk in run.chunks(run.plan(run.load_catalog()))]
    staging = Path(dataset / "_staging")
    staging.mkdir(exist_ok=True)
    old_rows = pq.read_table(next((dataset / "assets").glob("*.parquet")))
    (staging / keys[0]).mkdir()
    pq.write_table(old_rows.slice(0, 2), staging / keys[0] / "assets.parquet")  # rows without failures
    cut = stage_chunk(ChunkResult(rows=[_row("x")]), staging_dir=str(staging), key=keys[1], run_id="dead")
    Path(cut.assets_path).write_bytes(Path(cut.assets_path).read_bytes()[:100])

    forced = enrich_catalog(source=str(sample_manifest), dataset=str(dataset), chunk_size=2, limit=4, embedding_dim=256, force=True)
    assert forced["enriched"] == 4 and forced["failed"] == 0
    rows = Dataset(str(dataset)).read_assets()
    assert sorted(rows["image_id"]) == list(stored["image_id"]) and set(rows["run_id"]) == {forced["run_id"]}
    assert not list(staging.rglob("*.parquet")), "the half-written entries are gone"


@pytest.mark.usefixtures("prefect_harness")
def test_a_dataset_path_that_is_a_file_is_refused_before_any_chunk(sample_manifest, tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("keep me")
    for dataset, words in ((target, "is a file"), (target / "ds", "is inside")):
        with pytest.raises(DatasetLocationError, match=words):
            enrich_catalog(source=str(sample_manifest), dataset=str(dataset), limit=2, embedding_dim=256)
    assert target.read_text() == "keep me"
    with pytest.raises(DatasetLocationError, match="is a file"):
        Dataset(target).check_writable()
    Dataset(tmp_path / "new" / "ds").check_writable()  # a folder still to create is fine
    assert not (tmp_path / "new").exists(), "the check creates nothing"


def test_the_cli_refuses_a_file_as_dataset_in_one_line(cli, sample_manifest, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = cli("run", str(sample_manifest), "--dataset", "taken", "--limit", "2", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert errors == ["error: the dataset location taken is a file: choose a folder (--dataset)"], output
    assert "Traceback" not in output
