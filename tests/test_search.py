"""Vector search over an enriched dataset: the index, text/image/similar queries, filters, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from deltalake import write_deltalake

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError, DatasetError
from media_enrichment.providers.local import LocalEmbedder
from media_enrichment.schema import ASSETS_SCHEMA
from media_enrichment.search import (
    VectorIndex,
    embedder_for,
    search_image,
    search_text,
    similar,
)
from tests.helpers import run_cli

DIM = 256


@pytest.fixture(scope="module")
def rows(enriched_sample) -> pd.DataFrame:
    frame = enriched_sample.read_assets()
    attributes = frame["attributes"].map(json.loads)
    frame["origin"] = [a.get("variant_of") or i for i, a in zip(frame["image_id"], attributes)]
    frame["theme"] = attributes.map(lambda a: a["theme"])
    return frame.set_index("image_id", drop=False)


def test_index_holds_every_row_normalised(sample_index, rows):
    assert len(sample_index) == len(rows)
    assert sorted(sample_index.ids) == sorted(rows["image_id"])
    assert sample_index.dim == DIM and sample_index.matrix.dtype == np.float32
    assert sample_index.matrix.shape == (len(rows), DIM)
    assert sample_index.embedding_model == f"local/visual-embed-v1-{DIM}"
    np.testing.assert_allclose(np.linalg.norm(sample_index.matrix, axis=1), 1.0, atol=1e-5)
    assert "poster-01" in sample_index and "nope" not in sample_index


def test_query_embedder_is_built_from_the_stored_model(sample_index):
    embedder = embedder_for(sample_index, Settings())  # settings say 1024 dims; the dataset says 256
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.model_id == sample_index.embedding_model and embedder.dim == DIM
    with pytest.raises(ConfigError, match="not be comparable"):
        embedder_for(sample_index, Settings(), provider="bedrock")
    with pytest.raises(ConfigError, match="does not match"):
        search_text(sample_index, LocalEmbedder(1024), "red")


def test_bedrock_datasets_get_a_titan_query_embedder(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    vectors = np.eye(3, 384, dtype=np.float32)
    titan = VectorIndex.from_arrays(["a", "b", "c"], vectors, embedding_model="amazon.titan-embed-image-v1")
    embedder = embedder_for(titan, Settings(aws_region="us-east-1"))
    assert embedder.model_id == "amazon.titan-embed-image-v1" and embedder.dim == 384
    with pytest.raises(ConfigError):
        embedder_for(titan, Settings(aws_region="us-east-1"), provider="local")


def test_red_finds_a_red_poster(sample_index, rows):
    hits = search_text(sample_index, embedder_for(sample_index, Settings()), "red", k=5)
    assert len(hits) == 5 and hits == sorted(hits, key=lambda h: -h.score)
    assert any(rows.loc[h.image_id, "theme"] == "poster" and "red" in h.tags for h in hits[:3]), hits[:3]

def test_similar_to_a_variant_finds_its_original(sample_index, rows):
    variants = rows[rows["origin"] != rows["image_id"]]
    assert len(variants) >= 4
    for variant in variants.itertuples():
        family = set(rows.index[rows["origin"] == variant.origin]) - {variant.image_id}
        hits = similar(sample_index, variant.image_id, len(family))
        assert variant.image_id not in [h.image_id for h in hits]
        assert {h.image_id for h in hits} == family, variant.image_id
        # The original comes first, unless another copy identical to it (a re-encode) ties with it.
        first = hits[0].image_id
        assert first == variant.origin or float(sample_index.vector(first) @ sample_index.vector(variant.origin)) > 0.99
    assert similar(sample_index, "sunset-01-crop", 1)[0].image_id == "sunset-01"


def test_search_by_image_bytes(sample_index, sample_manifest):
    data = (sample_manifest.parent / "landscape" / "hills-01.jpg").read_bytes()
    hits = search_image(sample_index, embedder_for(sample_index, Settings()), data, k=2)
    assert {h.image_id for h in hits} == {"hills-01", "hills-01-small"}
    assert hits[0].score > 0.99


def test_tag_and_keyword_filters_are_a_mask_before_ranking(sample_index, rows):
    query = sample_index.vector("poster-01")
    with_text = set(rows.index[rows["tags"].map(lambda t: "text" in t)])
    assert 0 < len(with_text) < len(rows)
    hits = sample_index.search_vector(query, k=len(rows), tags=["TEXT"])  # case-insensitive
    assert {h.image_id for h in hits} == with_text
    assert all("text" in h.tags for h in hits)

    # Every given tag must be present; the best rows by score that lack it are not returned.
    tag = next(t for t in rows.loc["poster-01", "tags"] if t != "text")
    both = {i for i in with_text if tag in rows.loc[i, "tags"]}
    assert {h.image_id for h in sample_index.search_vector(query, k=50, tags=["text", tag])} == both
    assert sample_index.search_vector(query, k=5, tags=["no-such-tag"]) == []

    keyword = rows.loc["poster-01", "keywords"][0]
    hits = sample_index.search_vector(query, k=50, keywords=[keyword.upper()])
    assert hits and all(keyword.casefold() in {k.casefold() for k in h.keywords} for h in hits)
    assert "poster-01" in {h.image_id for h in hits}

    hits = sample_index.search_vector(query, k=3, tags="text", exclude=["poster-01"])
    assert "poster-01" not in {h.image_id for h in hits} and all("text" in h.tags for h in hits)


@pytest.mark.slow  # 100,000 rows of 256 floats, indexed and searched (2.6-4.6 s)
def test_planted_neighbour_found_among_100k_rows():
    rng = np.random.default_rng(7)
    n, dim = 100_000, 256
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    ids = [f"img-{i:06d}" for i in range(n)]
    planted = 73_421
    index = VectorIndex.from_arrays(ids, vectors, embedding_model="local/visual-embed-v1-256")
    query = vectors[planted] + 0.3 * rng.standard_normal(dim, dtype=np.float32)
    hits = index.search_vector(query, k=10)
    assert hits[0].image_id == ids[planted] and hits[0].score > 0.9
    # argpartition's top k equals a full sort's top k.
    scores = index.matrix @ (query / np.linalg.norm(query))
    assert [h.image_id for h in hits] == [ids[i] for i in np.argsort(-scores)[:10]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:10], rtol=1e-5)
    # The same vector, excluded: the planted row is no longer returned.
    assert ids[planted] not in [h.image_id for h in index.search_vector(query, k=10, exclude=[ids[planted]])]


def test_bad_queries_are_refused(sample_index):
    with pytest.raises(DatasetError, match="unknown image id 'poster-1'.*poster-01"):
        similar(sample_index, "poster-1", 3)
    with pytest.raises(DatasetError, match="has 3 values"):
        sample_index.search_vector(np.ones(3), k=1)
    with pytest.raises(ValueError, match="k must be"):
        sample_index.search_vector(sample_index.vector("poster-01"), k=0)
    with pytest.raises(ValueError, match="empty"):
        search_text(sample_index, embedder_for(sample_index, Settings()), "  ")


def test_empty_and_mixed_datasets_are_refused(enriched_sample, tmp_path):
    with pytest.raises(DatasetError, match="no dataset"):
        VectorIndex.from_dataset(Dataset(tmp_path / "nothing"))

    empty = Dataset(tmp_path / "empty")
    write_deltalake(empty.assets_uri, ASSETS_SCHEMA.empty_table())
    with pytest.raises(DatasetError, match="no images"):
        VectorIndex.from_dataset(empty)

    table = enriched_sample.assets_table().to_pyarrow_table()
    models = table.column("embedding_model").to_pylist()
    models[0] = "amazon.titan-embed-image-v1"
    mixed = Dataset(tmp_path / "mixed")
    write_deltalake(mixed.assets_uri, table.set_column(table.schema.get_field_index("embedding_model"),
                                                      "embedding_model", [models]))
    with pytest.raises(DatasetError, match="mixes vectors.*amazon.titan-embed-image-v1.*1 rows"):
        VectorIndex.from_dataset(mixed)


def test_time_travel(enriched_sample, sample_index):
    assert len(VectorIndex.from_dataset(enriched_sample, version=0)) == len(sample_index)
    with pytest.raises(DatasetError):
        VectorIndex.from_dataset(enriched_sample, version=99)


def test_cli_search_and_similar(enriched_sample):
    result = run_cli("search", "red", "--dataset", enriched_sample.root, "-k", "3")
    assert result.exit_code == 0, result.output
    assert "poster-01" in result.output and "local/visual-embed-v1-256" in result.output

    result = run_cli("search", "red", "--dataset", enriched_sample.root, "-k", "40", "--tag", "text")
    assert result.exit_code == 0, result.output
    assert all(f"poster-0{i}" in result.output for i in range(1, 6))
    assert not any(word in result.output for word in ("sunset", "hills", "city-", "product-", "abstract-"))

    result = run_cli("similar", "city-03-crop", "--dataset", enriched_sample.root, "-k", "1")
    assert result.exit_code == 0, result.output
    assert "city-03 " in result.output and "city-01" not in result.output


def test_cli_errors_exit_1_with_a_message(enriched_sample, tmp_path):
    result = run_cli("similar", "no-such-image", "--dataset", enriched_sample.root)
    assert result.exit_code == 1 and "error:" in result.output and "unknown image id" in result.output
    result = run_cli("search", "red", "--dataset", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "no dataset" in result.output
    result = run_cli("search", "red", "--dataset", enriched_sample.root, "--provider", "bedrock")
    assert result.exit_code == 1 and "not be comparable" in result.output
    result = run_cli("search", "--dataset", enriched_sample.root)
    assert result.exit_code == 1 and "either a query text or --image" in result.output


def test_index_of_chosen_rows_only(enriched_sample, tmp_path):
    ids = ["city-01", "poster-01", "sunset-01"]
    index = VectorIndex.from_dataset(enriched_sample, image_ids=ids)
    assert sorted(index.ids.tolist()) == ids
    # A table of several files (one per commit) is filtered the same way.
    import pyarrow as pa

    from media_enrichment.dataset import Dataset

    copy = Dataset(tmp_path / "copy")
    rows = pa.Table.from_pandas(enriched_sample.read_assets(), preserve_index=False)
    for start in range(0, rows.num_rows, 10):
        copy.merge_assets(rows.slice(start, 10), metadata={})
    assert sorted(VectorIndex.from_dataset(copy, image_ids=ids).ids.tolist()) == ids
