from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from media_enrichment.dataset import Dataset
from media_enrichment.errors import DatasetError
from media_enrichment.pipeline.staging import assets_table, failures_table


def _row(image_id: str, title: str, run_id: str = "r1") -> dict:
    return {
        "image_id": image_id, "source_uri": f"/x/{image_id}.png", "content_sha256": "0" * 64,
        "media_type": "image/png", "width": 4, "height": 3, "size_bytes": 10, "batch": "b", "attributes": None,
        "title": title, "description": "d", "keywords": ["k"], "tags": ["t"], "ocr_texts": [],
        "embedding": [0.5, 0.5], "embedding_dim": 2, "enrichment_model": "m", "embedding_model": "e",
        "prompt_version": "p", "input_tokens": 1, "output_tokens": 2, "run_id": run_id,
        "enriched_at": datetime.now(timezone.utc),
    }


def _failure(image_id: str, run_id: str = "r1") -> dict:
    return {
        "image_id": image_id, "source_uri": "/x", "stage": "prepare", "error_type": "ImageError",
        "message": "bad", "attempts": 1, "run_id": run_id, "at": datetime.now(timezone.utc),
    }


def test_first_merge_creates_version_zero_then_upserts(tmp_path):
    ds = Dataset(tmp_path / "ds")
    assert ds.version() is None
    assert ds.read_assets().empty
    assert ds.merge_assets(assets_table([_row("a", "A"), _row("b", "B")]), metadata={"run_id": "r1"}) == 0
    assert ds.merge_assets(assets_table([_row("b", "B2", "r2"), _row("c", "C", "r2")]), metadata={"run_id": "r2"}) == 1
    rows = ds.read_assets().sort_values("image_id")
    assert list(rows["title"]) == ["A", "B2", "C"]
    assert ds.read_assets(version=0).shape[0] == 2
    history = ds.history()
    assert [h["version"] for h in history] == [1, 0]
    assert history[0]["run_id"] == "r2" and history[1]["run_id"] == "r1"
    schema = DeltaTable(str(tmp_path / "ds" / "assets")).to_pyarrow_table().schema
    assert schema.field("embedding").type.value_type == pa.float32()


def test_empty_merge_commits_nothing(tmp_path):
    ds = Dataset(tmp_path / "ds")
    assert ds.merge_assets(assets_table([]), metadata={}) is None
    assert ds.version() is None


def test_failures_count_attempts_and_are_resolved_by_success(tmp_path):
    ds = Dataset(tmp_path / "ds")
    assert ds.record_failures(failures_table([_failure("a"), _failure("b")]), resolved_ids=[], metadata={}) == 0
    assert ds.record_failures(failures_table([_failure("a", "r2")]), resolved_ids=["b"], metadata={}) == 1
    failures = ds.read_failures()
    assert list(failures["image_id"]) == ["a"]
    assert int(failures.loc[0, "attempts"]) == 2 and failures.loc[0, "run_id"] == "r2"
    # Nothing to record and nothing known to resolve: no commit.
    assert ds.record_failures(failures_table([]), resolved_ids=["zzz"], metadata={}) is None


def test_missing_version_is_a_dataset_error(tmp_path):
    ds = Dataset(tmp_path / "ds")
    with pytest.raises(DatasetError, match="no dataset"):
        ds.assets_table()
    ds.merge_assets(assets_table([_row("a", "A")]), metadata={})
    with pytest.raises(DatasetError, match="version 7"):
        ds.read_assets(version=7)


def test_concurrent_merges_both_commit(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    ds = Dataset(tmp_path / "ds")
    ds.merge_assets(assets_table([_row("seed", "S")]), metadata={})

    def merge(prefix: str) -> int:
        other = Dataset(tmp_path / "ds")  # each writer has its own handle, as two runs would
        return other.merge_assets(assets_table([_row(f"{prefix}{i}", prefix) for i in range(50)]), metadata={"run_id": prefix})

    for round_ in range(3):
        with ThreadPoolExecutor(max_workers=2) as pool:
            versions = list(pool.map(merge, [f"a{round_}-", f"b{round_}-"]))
        assert len(set(versions)) == 2, "two commits, not one overwriting the other"
    rows = ds.read_assets()
    assert len(rows) == 1 + 6 * 50 and rows["image_id"].is_unique
    assert ds.version() == 6


def test_concurrent_writers_of_the_same_new_images_leave_one_row_each(tmp_path):
    """Two runs enriching the same new images at once: the commit that loses the race is retried
    on the new version and replaces the winner's rows instead of adding a second copy."""
    from concurrent.futures import ThreadPoolExecutor

    Dataset(tmp_path / "ds").merge_assets(assets_table([_row("seed", "S")]), metadata={})

    def write(run: str) -> int:
        rows = assets_table([_row(f"same-{i}", run, run) for i in range(40)])
        return Dataset(tmp_path / "ds").merge_assets(rows, metadata={"run_id": run})

    for round_ in range(3):
        with ThreadPoolExecutor(max_workers=2) as pool:
            versions = list(pool.map(write, [f"a{round_}", f"b{round_}"]))
        assert len(set(versions)) == 2
    rows = Dataset(tmp_path / "ds").read_assets()
    assert len(rows) == 41 and rows["image_id"].is_unique
    assert rows.loc[rows.image_id != "seed", "run_id"].nunique() == 1, "each image's row comes from one commit"


def test_ids_that_need_quoting_are_upserted(tmp_path):
    ds = Dataset(tmp_path / "ds")
    odd = ["it's", "back\\slash", "a''b", "ünï/côdé.jpg", "semi;colon) OR 1=1", "new\nline", "%_"]
    ds.merge_assets(assets_table([_row(i, "old") for i in odd] + [_row("keep", "K")]), metadata={})
    ds.merge_assets(assets_table([_row(i, "new") for i in odd]), metadata={})
    rows = ds.read_assets().set_index("image_id")["title"].to_dict()
    assert rows == {**{i: "new" for i in odd}, "keep": "K"}


def test_repeated_image_ids_in_one_commit_are_refused(tmp_path):
    ds = Dataset(tmp_path / "ds")
    ds.merge_assets(assets_table([_row("a", "A")]), metadata={})
    with pytest.raises(DatasetError, match="repeated"):
        ds.merge_assets(assets_table([_row("b", "B"), _row("b", "B2")]), metadata={})
    assert ds.version() == 0 and list(ds.read_assets()["image_id"]) == ["a"]


def test_rollback_compact_and_vacuum(tmp_path):
    ds = Dataset(tmp_path / "ds")
    for i in range(3):
        ds.merge_assets(assets_table([_row(f"r{i}", f"T{i}")]), metadata={"run_id": f"r{i}"})
    assert ds.version() == 2 and len(ds.read_assets()) == 3
    assert ds.rollback(0) == 3
    assert list(ds.read_assets()["image_id"]) == ["r0"]
    assert len(ds.read_assets(version=2)) == 3, "history is kept"
    assert int(ds.history()[0]["restored_to"]) == 0
    with pytest.raises(DatasetError, match="cannot roll back"):
        ds.rollback(9)

    for i in range(3):
        ds.merge_assets(assets_table([_row(f"n{i}", "N")]), metadata={})
    metrics = ds.compact()
    assert metrics["numFilesRemoved"] >= 2 and metrics["numFilesAdded"] == 1
    before = sorted(ds.read_assets()["image_id"])
    assert ds.vacuum(dry_run=True) == [], "recent files are kept by the default retention"
    with pytest.raises(DatasetError, match="(?i)retention"):
        ds.vacuum(retention_hours=0, dry_run=False)
    assert sorted(ds.read_assets()["image_id"]) == before


def test_group_staged_bounds_rows_per_commit():
    from media_enrichment.pipeline.commit import group_staged
    from media_enrichment.pipeline.staging import StagedChunk

    def chunk(key, rows):
        return StagedChunk(key=key, assets_path="", enriched=rows, failed=0, input_tokens=0, output_tokens=0)

    chunks = [chunk("a", 3), chunk("b", 0), chunk("c", 2), chunk("d", 4), chunk("e", 9), chunk("f", 1)]
    groups = [[c.key for c in g] for g in group_staged(chunks, max_rows=5)]
    assert groups == [["a", "c"], ["d"], ["e"], ["f"]]
    assert group_staged(chunks, max_rows=100)[0][-1].key == "f"


_RETAINED_AFTER_COMMIT = """
import gc, sys, tempfile, time
import media_enrichment  # before deltalake: this is what sets the allocator's options
import numpy as np, pyarrow as pa
from deltalake import write_deltalake

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

n = 6000
vectors = pa.array([np.random.rand(1024).astype("float32") for _ in range(n)], type=pa.list_(pa.float32()))
table = pa.table({"image_id": [str(i) for i in range(n)], "embedding": vectors})
before = rss_mib()
write_deltalake(tempfile.mkdtemp(), table, mode="overwrite")
gc.collect()
time.sleep(0.5)
print(rss_mib() - before)
"""


def _retained_mib(env: dict) -> float:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RETAINED_AFTER_COMMIT], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.slow  # starts Python processes
def test_delta_rs_returns_a_commits_memory_unless_the_user_chose_otherwise():
    """delta-rs's jemalloc keeps freed pages for 10 s by default; importing media_enrichment
    (before deltalake) makes it hand them back at once, and keeps a value the user set."""
    import os

    import media_enrichment

    env = {k: v for k, v in os.environ.items() if k != media_enrichment.JEMALLOC_CONF_VAR}
    ours = _retained_mib(env)
    users = _retained_mib({**env, media_enrichment.JEMALLOC_CONF_VAR: "dirty_decay_ms:10000,muzzy_decay_ms:10000"})
    # Measured: ~190 MiB still held half a second after a 6,000-row commit with the user's
    # (jemalloc's default) decay, ~100 MiB less with ours.
    assert users - ours > 40, f"retained after commit: ours {ours:.0f} MiB, 10 s decay {users:.0f} MiB"
