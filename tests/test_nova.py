"""Amazon Nova Multimodal Embeddings: the embedder, the test server's Nova API, the flow, search, CLI.

Everything runs the real boto3 client against our Bedrock-compatible server on loopback; only
the network is faked.
"""

from __future__ import annotations

import base64
import io
import json

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from pydantic import ValidationError

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError, ImageError
from media_enrichment.images import NOVA_EMBED_LIMITS, TITAN_LIMITS, PreparedImage, prepare_image
from media_enrichment.providers import embedder_class
from media_enrichment.providers.bedrock import bedrock_embedder_class, build_bedrock_providers
from media_enrichment.providers.bedrock.embedders import BedrockEmbedder
from media_enrichment.providers.local import LocalEmbedder
from media_enrichment.providers.bedrock.nova import NovaEmbedder
from media_enrichment.search import VectorIndex, embedder_for, search_image, search_text
from media_enrichment.testing import BedrockServer

NOVA = "amazon.nova-2-multimodal-embeddings-v1:0"
TITAN = "amazon.titan-embed-image-v1"
CLAUDE = "global.anthropic.claude-haiku-4-5-20251001-v1:0"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def server(aws_env):
    """A loopback server with boto3 pointed at it (fake credentials, us-east-1)."""
    with BedrockServer(max_lifetime=300) as srv:
        for key, value in srv.env().items():
            aws_env.setenv(key, value)
        aws_env.setenv("MEDIA_ENRICH_DESCRIBER_MODEL_ID", CLAUDE)
        aws_env.setenv("MEDIA_ENRICH_BEDROCK_MAX_ATTEMPTS", "2")
        yield srv


def _settings(**overrides) -> Settings:
    values = dict(provider="bedrock", embedder_model_id=NOVA, embedding_dim=1024, bedrock_max_attempts=2)
    values.update(overrides)
    return Settings(**values)


def _nova(dim: int = 1024) -> NovaEmbedder:
    embedder = build_bedrock_providers(_settings(embedding_dim=dim))[1]
    assert isinstance(embedder, NovaEmbedder)
    return embedder


def _image(rgb, size=(64, 48), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format=fmt)
    return buffer.getvalue()


RED, BLUE = (210, 20, 30), (30, 60, 210)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _records(server: BedrockServer, model: str = NOVA):
    return [r for r in server.counters.log if r.model_id == model]


# ---------------------------------------------------------------------------------------------
# Request bodies and the server's validation
# ---------------------------------------------------------------------------------------------


def test_request_bodies_follow_novas_schema(server):
    embedder = _nova(384)
    png = PreparedImage(_image(RED), "image/png", 64, 48)
    body = embedder.image_body(png, purpose="GENERIC_INDEX")
    assert body == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 384,
            "image": {"format": "png", "source": {"bytes": base64.b64encode(png.data).decode()}},
        },
    }
    text = embedder.text_body("a red poster", purpose="IMAGE_RETRIEVAL")["singleEmbeddingParams"]
    assert text == {
        "embeddingPurpose": "IMAGE_RETRIEVAL",
        "embeddingDimension": 384,
        "text": {"truncationMode": "END", "value": "a red poster"},
    }
    # The server accepts both as the service would, and the vector is at embeddings[0].embedding.
    client = boto3.client("bedrock-runtime")
    for sent in (body, embedder.text_body("a red poster", purpose="IMAGE_RETRIEVAL")):
        answer = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(sent))["body"].read())
        assert len(answer["embeddings"]) == 1 and len(answer["embeddings"][0]["embedding"]) == 384
    assert [r.purpose for r in _records(server)] == ["GENERIC_INDEX", "IMAGE_RETRIEVAL"]


def _body(**params) -> dict:
    """A valid image body, with ``params`` replacing or adding ``singleEmbeddingParams`` keys."""
    png = base64.b64encode(_image(RED)).decode()
    single = {"embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 256, "image": {"format": "png", "source": {"bytes": png}}}
    single.update(params)
    return {"schemaVersion": "nova-multimodal-embed-v1", "taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": single}


def _text_body(**text) -> dict:
    """A text body whose ``text`` object is ``text``."""
    body = _body(text=text)
    del body["singleEmbeddingParams"]["image"]
    return body


def _without(body: dict, *path: str) -> dict:
    node = body
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return body


JPEG_B64 = base64.b64encode(_image(RED, fmt="JPEG")).decode()
BAD_BODIES = {
    "wrong schema version": {**_body(), "schemaVersion": "nova-multimodal-embed-v2"},
    "no task type": _without(_body(), "taskType"),
    "async-only task type": {**_body(), "taskType": "SEGMENTED_EMBEDDING"},
    "extraneous top-level key": {**_body(), "inputText": "red"},
    "no purpose": _without(_body(), "singleEmbeddingParams", "embeddingPurpose"),
    "unknown purpose": _body(embeddingPurpose="SEARCH"),
    "dimension 512": _body(embeddingDimension=512),
    "dimension as a string": _body(embeddingDimension="1024"),
    "image and text together": _body(text={"truncationMode": "END", "value": "red"}),
    "no input": _without(_body(), "singleEmbeddingParams", "image"),
    "format jpg": _body(image={"format": "jpg", "source": {"bytes": JPEG_B64}}),
    "format not matching the bytes": _body(image={"format": "png", "source": {"bytes": JPEG_B64}}),
    "no image format": _body(image={"source": {"bytes": JPEG_B64}}),
    "bytes and s3 together": _body(image={"format": "jpeg", "source": {"bytes": JPEG_B64, "s3Location": {"uri": "s3://b/k"}}}),
    "not base64": _body(image={"format": "png", "source": {"bytes": "%%%not-base64%%%"}}),
    "text without truncation mode": _text_body(value="red"),
    "unknown truncation mode": _text_body(truncationMode="MIDDLE", value="red"),
    "empty text": _text_body(truncationMode="END", value=" "),
    "too long a text with NONE": _text_body(truncationMode="NONE", value="x" * 8193),
}


def test_the_valid_bodies_the_bad_ones_derive_from_are_accepted(server):
    client = boto3.client("bedrock-runtime")
    for body in (_body(), _text_body(truncationMode="END", value="red")):
        answer = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(body))["body"].read())
        assert len(answer["embeddings"][0]["embedding"]) == 256
    assert server.counters.outcomes == {"ok": 2}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_server_refuses_what_the_service_refuses(server, case):
    client = boto3.client("bedrock-runtime")
    with pytest.raises(ClientError) as info:
        client.invoke_model(modelId=NOVA, body=json.dumps(BAD_BODIES[case]))
    error = info.value.response
    assert error["Error"]["Code"] == "ValidationException", case
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert server.counters.outcomes == {"validation": 1}


def test_server_refuses_images_over_8000_px_and_truncates_long_text(server):
    client = boto3.client("bedrock-runtime")
    tall = base64.b64encode(_image((0, 0, 0), size=(1, 8001))).decode()
    with pytest.raises(ClientError, match="8000"):
        client.invoke_model(modelId=NOVA, body=json.dumps(_body(image={"format": "png", "source": {"bytes": tall}})))
    long_text = _text_body(truncationMode="END", value="red " * 3000)
    answer = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(long_text))["body"].read())
    assert answer["embeddings"][0]["embeddingType"] == "TEXT"
    assert answer["embeddings"][0]["truncatedCharLength"] == 8192


# ---------------------------------------------------------------------------------------------
# The embedder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [256, 3072])
def test_vectors_have_the_configured_size_and_share_one_space(server, dim):
    embedder = _nova(dim)
    red = embedder.embed_image(prepare_image(_image(RED), embedder.image_limits))
    blue = embedder.embed_image(prepare_image(_image(BLUE, fmt="JPEG"), embedder.image_limits))
    query = embedder.embed_text("a red poster")
    for vector in (red, blue, query):
        assert vector.dtype == np.float32 and vector.shape == (dim,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert _cos(query, red) > _cos(query, blue) + 0.3, "a text lands near the image of what it names"
    records = _records(server)
    assert {r.dims for r in records} == {dim}
    assert [r.media_types for r in records] == [("image/png",), ("image/jpeg",), ()]


def test_purposes_index_for_stored_images_and_image_retrieval_for_queries(server):
    embedder = _nova()
    image = prepare_image(_image(RED), embedder.image_limits)
    embedder.embed_image(image)
    embedder.embed_text("red")
    embedder.embed_query_image(image)
    assert [(r.purpose, r.has_text) for r in _records(server)] == [
        ("GENERIC_INDEX", False), ("IMAGE_RETRIEVAL", True), ("IMAGE_RETRIEVAL", False),
    ]


def test_a_caption_is_a_second_request_averaged_in(server):
    embedder = _nova(256)
    image = prepare_image(_image(BLUE), embedder.image_limits)
    alone = embedder.embed_image(image)
    caption = embedder.embed_text("red")  # IMAGE_RETRIEVAL; the fake's vector does not depend on the purpose
    captioned = embedder.embed_image(image, text="red")
    assert np.linalg.norm(captioned) == pytest.approx(1.0, abs=1e-4)
    expected = (alone + caption) / np.linalg.norm(alone + caption)
    np.testing.assert_allclose(captioned, expected, atol=1e-5)
    assert [r.purpose for r in _records(server)][-2:] == ["GENERIC_INDEX", "GENERIC_INDEX"]
    assert len(_records(server)) == 4


def test_queries_that_nova_would_refuse_are_refused_before_sending(server):
    embedder = _nova()
    with pytest.raises(ValueError, match="empty"):
        embedder.embed_text("  ")
    with pytest.raises(ValueError, match="8192"):
        embedder.embed_text("x" * 8193)
    with pytest.raises(ImageError, match="image/bmp"):
        embedder.embed_image(PreparedImage(b"BM....", "image/bmp", 1, 1))
    assert server.counters.total == 0


def test_image_preparation_respects_novas_limits():
    webp = io.BytesIO()
    Image.new("RGB", (40, 30), RED).save(webp, format="WEBP", lossless=True)
    kept = prepare_image(webp.getvalue(), NOVA_EMBED_LIMITS)
    assert kept.media_type == "image/webp", "Nova takes WebP as it is"
    assert prepare_image(webp.getvalue(), TITAN_LIMITS).media_type in ("image/png", "image/jpeg")
    big = prepare_image(_image(RED, size=(4000, 1000)), NOVA_EMBED_LIMITS)
    assert max(big.width, big.height) <= NOVA_EMBED_LIMITS.max_long_edge
    assert len(big.data) <= NOVA_EMBED_LIMITS.max_bytes


# ---------------------------------------------------------------------------------------------
# Selection and settings
# ---------------------------------------------------------------------------------------------


def test_the_model_id_chooses_the_embedder():
    assert bedrock_embedder_class(TITAN) is BedrockEmbedder
    assert bedrock_embedder_class(NOVA) is NovaEmbedder
    assert bedrock_embedder_class("us." + NOVA) is NovaEmbedder
    assert bedrock_embedder_class(f"arn:aws:bedrock:us-east-1::foundation-model/{NOVA}") is NovaEmbedder
    assert embedder_class("local", NOVA) is LocalEmbedder
    for unknown in ("amazon.nova-lite-v1:0", "cohere.embed-english-v3", "amazon.titan-embed-text-v2:0", ""):
        with pytest.raises(ConfigError, match="amazon.nova-2-multimodal-embeddings-v1:0"):
            bedrock_embedder_class(unknown)


def test_each_embedders_sizes_are_defined_once_and_settings_use_them(monkeypatch):
    assert BedrockEmbedder.dims == (256, 384, 1024)
    assert NovaEmbedder.dims == (256, 384, 1024, 3072)
    assert _settings(embedding_dim=3072).embedding_dim == 3072
    with pytest.raises(ValidationError, match="must be 256, 384 or 1024 for amazon.titan-embed-image-v1"):
        _settings(embedder_model_id=TITAN, embedding_dim=3072)
    with pytest.raises(ValidationError, match="must be 256, 384 or 1024 for the local embedder"):
        Settings(provider="local", embedding_dim=3072)
    with pytest.raises(ValidationError, match=f"must be 256, 384, 1024 or 3072 for {NOVA}"):
        _settings(embedding_dim=512)
    monkeypatch.setenv("MEDIA_ENRICH_EMBEDDER_MODEL_ID", NOVA)
    monkeypatch.setenv("MEDIA_ENRICH_EMBEDDING_DIM", "3072")
    from_env = Settings(provider="bedrock")
    assert (from_env.embedder_model_id, from_env.embedding_dim) == (NOVA, 3072)


def test_an_unknown_embedder_id_is_a_config_error_before_any_call(server):
    with pytest.raises(ConfigError, match="amazon.titan-embed-image-v1"):
        build_bedrock_providers(_settings(embedder_model_id="amazon.nova-lite-v1:0"))
    with pytest.raises(ConfigError, match="3072"):
        NovaEmbedder(boto3.client("bedrock-runtime"), dim=512)
    # Each embedder refuses the other's model id (the check they share, on their own pattern).
    with pytest.raises(ConfigError, match="does not name Amazon Nova Multimodal Embeddings"):
        NovaEmbedder(boto3.client("bedrock-runtime"), model_id=TITAN)
    with pytest.raises(ConfigError, match="does not name Titan Multimodal Embeddings G1"):
        BedrockEmbedder(boto3.client("bedrock-runtime"), model_id="us." + NOVA)
    assert server.counters.total == 0


# ---------------------------------------------------------------------------------------------
# The flow, search and the CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_flow_with_nova_then_search_and_a_refused_mismatch(server, sample_manifest, tmp_path, aws_env):
    from media_enrichment_prefect.flows.enrich import enrich_catalog

    ids = sorted(pd.read_csv(sample_manifest, dtype=str)["image_id"])
    aws_env.setenv("MEDIA_ENRICH_EMBEDDER_MODEL_ID", NOVA)
    root = str(tmp_path / "nova")
    summary = enrich_catalog(source=str(sample_manifest), dataset=root, provider="bedrock", embedding_dim=3072)
    assert summary["enriched"] == len(ids) and summary["failed"] == 0
    rows = Dataset(root).read_assets()
    assert set(rows["embedding_model"]) == {NOVA} and set(rows["embedding_dim"]) == {3072}
    assert all(len(v) == 3072 for v in rows["embedding"])
    stored = [r for r in _records(server) if r.purpose == "GENERIC_INDEX"]
    assert len(stored) == len(ids), "one GENERIC_INDEX request per image"
    assert max(n for (model, _), n in server.counters.billed_images.items() if model == NOVA) == 1

    # Search embeds the query with the dataset's own embedder, whatever the settings say.
    index = VectorIndex.from_dataset(Dataset(root))
    embedder = embedder_for(index, Settings(provider="bedrock", embedder_model_id=TITAN, embedding_dim=256))
    assert isinstance(embedder, NovaEmbedder) and (embedder.model_id, embedder.dim) == (NOVA, 3072)
    colour = rows["title"].iloc[0].split()[1]  # the server's titles: "<Mood> <colour> <subject>"
    hits = search_text(index, embedder, colour, k=3)
    assert hits and colour in hits[0].title.split()
    first = rows["image_id"].iloc[0]
    path = pd.read_csv(sample_manifest, dtype=str).set_index("image_id").loc[first, "path"]
    same = search_image(index, embedder, (sample_manifest.parent / path).read_bytes(), k=1)
    assert same[0].image_id == first and same[0].score > 0.99
    queries = [r.purpose for r in _records(server)][-2:]
    assert queries == ["IMAGE_RETRIEVAL", "IMAGE_RETRIEVAL"]

    # A dataset whose vectors Titan made refuses a Nova query vector.
    aws_env.setenv("MEDIA_ENRICH_EMBEDDER_MODEL_ID", TITAN)
    titan_root = str(tmp_path / "titan")
    enrich_catalog(source=str(sample_manifest), dataset=titan_root, provider="bedrock", embedding_dim=1024, limit=4)
    titan_index = VectorIndex.from_dataset(Dataset(titan_root))
    assert titan_index.embedding_model == TITAN
    before = server.counters.total
    with pytest.raises(ConfigError, match="does not match"):
        search_text(titan_index, _nova(1024), "red")
    assert server.counters.total == before, "refused before any query is embedded"


@pytest.mark.usefixtures("prefect_harness")
def test_cli_run_with_nova_then_search(cli, server, sample_manifest, tmp_path):
    dataset = str(tmp_path / "ds")
    run = cli(
        "run", str(sample_manifest), "--provider", "bedrock", "--dataset", dataset, "--embedding-dim", "3072",
        "--limit", "6", cwd=tmp_path, MEDIA_ENRICH_EMBEDDER_MODEL_ID=NOVA,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert NOVA in run.stdout
    rows = Dataset(dataset).read_assets()
    assert len(rows) == 6 and set(rows["embedding_dim"]) == {3072} and set(rows["embedding_model"]) == {NOVA}
    colour = rows["title"].iloc[0].split()[1]
    found = cli(
        "search", colour, "--dataset", dataset, "-k", "3", cwd=tmp_path, timeout=300, MEDIA_ENRICH_EMBEDDER_MODEL_ID=NOVA,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert NOVA in found.stdout, "the hits are titled with the dataset's embedding model"
    of_colour = set(rows.loc[rows["title"].str.split().str[1] == colour, "image_id"])
    assert any(image_id in found.stdout for image_id in of_colour)
    assert _records(server)[-1].purpose == "IMAGE_RETRIEVAL" and _records(server)[-1].has_text
