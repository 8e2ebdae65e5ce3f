"""The plan reads only the images whose bytes decide (``plan_work``), and an on-demand run reads
every other image once, to enrich it, and hashes those bytes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from media_enrichment.catalog import load_catalog, read_bytes
from media_enrichment.config import Settings
from media_enrichment.dataset.tables import FINGERPRINT_COLUMNS
from media_enrichment.errors import CatalogAccessError
from media_enrichment.pipeline.execution import ChunkEnricher
from media_enrichment.pipeline.plan import ModelVersions, plan_work
from media_enrichment.providers import build_providers
from media_enrichment.testing import BedrockServer
from tests.helpers import write_catalog

VERSIONS = ModelVersions("claude", "titan", "v1", 256)


class CountingReader:
    """The catalogue's reader, counting the reads of each path."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, uri: str) -> bytes:
        with self._lock:
            self.reads[uri] = self.reads.get(uri, 0) + 1
        return read_bytes(uri)

    def names(self) -> list[str]:
        return sorted(Path(uri).name for uri in self.reads)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored(rows: list[tuple[str, str]], versions: ModelVersions = VERSIONS) -> pd.DataFrame:
    records = [{"image_id": image_id, "content_sha256": sha, **versions.as_metadata()} for image_id, sha in rows]
    return pd.DataFrame(records, columns=FINGERPRINT_COLUMNS)


def _failures(rows: list[tuple[str, str, bool, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "content_sha256", "permanent", "attempts"])


def _plan(manifest: Path, reader: Callable[[str], bytes], **kwargs):
    kwargs.setdefault("stored", _stored([]))
    return plan_work(load_catalog(str(manifest)), versions=VERSIONS, read=reader, run_id="r", **kwargs)


def test_new_images_are_planned_unread_but_the_first_which_checks_the_storage(tmp_path):
    manifest = write_catalog(tmp_path / "cat", 5)
    reader = CountingReader()
    plan = _plan(manifest, reader, hash_new=False)
    assert reader.names() == ["0.png"], "one read, of the first new image: the catalogue's storage answers"
    assert [item.image_id for item in plan.items] == [f"img{i}" for i in range(5)]
    assert plan.items[0].content_sha256 == _sha(tmp_path / "cat" / "0.png")
    assert [item.content_sha256 for item in plan.items[1:]] == [None] * 4
    assert plan.reused == 0 and not plan.failures


def test_a_run_that_may_use_batch_jobs_hashes_every_image(tmp_path):
    manifest = write_catalog(tmp_path / "cat", 4)
    reader = CountingReader()
    plan = _plan(manifest, reader, hash_new=True)
    assert reader.names() == [f"{i}.png" for i in range(4)]
    assert [item.content_sha256 for item in plan.items] == [_sha(tmp_path / "cat" / f"{i}.png") for i in range(4)]


def test_images_the_dataset_holds_are_read_and_their_bytes_decide(tmp_path):
    folder = tmp_path / "cat"
    manifest = write_catalog(folder, 6)
    stored = _stored(
        [
            ("img0", _sha(folder / "0.png")),  # same bytes: reused
            ("img1", "0" * 64),  # the file changed since: enriched again
        ]
    )
    # img2 failed for good with these bytes; img3 failed once, may be tried again.
    failures = _failures([("img2", _sha(folder / "2.png"), True, 1), ("img3", _sha(folder / "3.png"), False, 1)])
    stale = _stored([("img5", _sha(folder / "5.png"))], ModelVersions("claude", "titan", "v0", 256))
    reader = CountingReader()
    plan = _plan(manifest, reader, stored=pd.concat([stored, stale]), failures=failures, hash_new=False)

    # Read: the rows' and the spent failure's images, and the first image of the others (img3).
    # img3's failure is not spent and img5's row is of another prompt version: their bytes
    # decide nothing, only img3 is read (as the first new one).
    assert reader.names() == ["0.png", "1.png", "2.png", "3.png"]
    assert plan.reused == 1 and plan.given_up == ["img2"]
    hashes = {item.image_id: item.content_sha256 for item in plan.items}
    assert hashes == {"img1": _sha(folder / "1.png"), "img3": _sha(folder / "3.png"), "img4": None, "img5": None}


def test_force_reads_only_the_first_image(tmp_path):
    folder = tmp_path / "cat"
    manifest = write_catalog(folder, 3)
    reader = CountingReader()
    plan = _plan(manifest, reader, stored=_stored([("img0", _sha(folder / "0.png"))]), force=True, hash_new=False)
    assert reader.names() == ["0.png"] and len(plan.items) == 3 and plan.reused == 0


def test_a_missing_first_image_is_its_failure_row_and_the_others_stay_unread(tmp_path):
    folder = tmp_path / "cat"
    manifest = write_catalog(folder, 3)
    (folder / "0.png").unlink()
    reader = CountingReader()
    plan = _plan(manifest, reader, hash_new=False)
    assert reader.names() == ["0.png"]
    assert [f["image_id"] for f in plan.failures] == ["img0"] and plan.failures[0]["stage"] == "read"
    assert [item.image_id for item in plan.items] == ["img1", "img2"]


def test_a_storage_that_refuses_the_first_new_image_stops_the_plan(tmp_path):
    manifest = write_catalog(tmp_path / "cat", 3)
    reads: list[str] = []

    def refused(uri: str) -> bytes:
        reads.append(uri)
        raise CatalogAccessError(f"access denied reading {uri}")

    with pytest.raises(CatalogAccessError, match="access denied"):
        _plan(manifest, refused, hash_new=False)
    assert len(reads) == 1


@pytest.mark.slow
def test_an_on_demand_run_reads_each_new_image_once_and_its_rows_carry_the_bytes_hash(aws_env, tmp_path):
    """Through the real providers on the loopback Bedrock server: the plan reads the first new
    image, the enrichment every image once; a row's hash and a failure row's hash are those of
    the bytes read, so the next plan reuses the rows and gives up on the undecodable image."""
    folder = tmp_path / "cat"
    manifest = write_catalog(folder, 4, extra_rows=[("zbroken", "broken.png")])
    (folder / "broken.png").write_bytes(b"not an image, named like one\n")
    # The catalogue is sorted by id: the broken image comes last, not read by the plan.
    assert list(load_catalog(str(manifest)).frame["image_id"]) == ["img0", "img1", "img2", "img3", "zbroken"]
    with BedrockServer() as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        describer, embedder = build_providers(Settings(provider="bedrock", embedding_dim=256))
        reader = CountingReader()
        versions = ModelVersions.of(describer, embedder)
        plan = plan_work(
            load_catalog(str(manifest)), stored=_stored([]), versions=versions, read=reader, run_id="r", hash_new=False
        )
        executor = ChunkEnricher(describer=describer, embedder=embedder, read=reader, run_id="r", threads=3)
        try:
            result = executor.enrich(plan.items)
        finally:
            executor.close()
        claude_calls = server.counters.requests[describer.model_id]

    paths = {f"img{i}": folder / f"{i}.png" for i in range(4)} | {"zbroken": folder / "broken.png"}
    # The broken image was not read by the plan: its failure row's hash is the enrichment's.
    assert [item.content_sha256 is None for item in plan.items] == [False, True, True, True, True]
    assert reader.reads == {str(p): 2 if p.name == "0.png" else 1 for p in paths.values()}, (
        "each image read once to enrich it; the first also by the plan"
    )
    assert claude_calls == 4
    assert {row["image_id"]: row["content_sha256"] for row in result.rows} == {
        image_id: _sha(path) for image_id, path in paths.items() if image_id != "zbroken"
    }
    [failure] = result.failures
    assert failure["image_id"] == "zbroken" and failure["stage"] == "prepare" and failure["permanent"]
    assert failure["content_sha256"] == _sha(folder / "broken.png")

    again = CountingReader()
    stored = _stored([(row["image_id"], row["content_sha256"]) for row in result.rows], versions)
    failures = _failures([(failure["image_id"], failure["content_sha256"], failure["permanent"], failure["attempts"])])
    replan = plan_work(
        load_catalog(str(manifest)), stored=stored, failures=failures, versions=versions, read=again, run_id="r2",
        hash_new=False,
    )
    assert replan.items == [] and replan.reused == 4 and replan.given_up == ["zbroken"]
    assert sorted(again.reads.values()) == [1] * 5, "the next plan reads each image once, to compare its bytes"
