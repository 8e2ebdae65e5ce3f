"""The offline providers: OCR and visual rules for descriptions, a content-based vector."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from media_enrichment.errors import ImageError
from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, ImageLimits, PreparedImage
from media_enrichment.providers.base import Describer, Description, Embedder
from media_enrichment.providers.local import LocalDescriber, LocalEmbedder
from media_enrichment.sample import generate_sample_catalog
from media_enrichment.schema import ImageMetadata


def prepared(image: Image.Image, limits: ImageLimits) -> PreparedImage:
    """PNG bytes within ``limits`` (built here, independent of ``images.prepare_image``)."""
    image = image.convert("RGB")
    pixels = image.width * image.height
    scale = min(1.0, limits.max_long_edge / max(image.size), (limits.max_pixels / pixels) ** 0.5)
    if scale < 1:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return PreparedImage(data=buffer.getvalue(), media_type="image/png", width=image.width, height=image.height)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """image_id -> {row, image} for the default sample catalogue."""
    manifest = generate_sample_catalog(tmp_path_factory.mktemp("sample"))
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for row in rows:
        with Image.open(manifest.parent / row["path"]) as im:
            out[row["image_id"]] = {"row": row, "image": im.convert("RGB")}
    return out


@pytest.fixture(scope="module")
def describer() -> LocalDescriber:
    return LocalDescriber()


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder(dim=1024)


@pytest.fixture(scope="module")
def sample_vectors(sample: dict[str, dict], embedder: LocalEmbedder) -> tuple[list[str], np.ndarray]:
    ids = sorted(sample)
    vectors = np.stack([embedder.embed_image(prepared(sample[i]["image"], TITAN_LIMITS)) for i in ids])
    return ids, vectors


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.new("RGB", size, colour)


# --------------------------------------------------------------------------------------------
# Describer


def test_describer_identity() -> None:
    describer = LocalDescriber()
    assert isinstance(describer, Describer)
    assert "local" in describer.model_id and describer.model_id == "local/rapidocr-visual-v1"
    assert describer.prompt_version == "local-rules-1"
    assert describer.image_limits == CLAUDE_LIMITS


@pytest.mark.slow  # the sample catalogue (5-10 s), and OCR: 1-3 s an image
def test_ocr_reads_the_poster(sample: dict[str, dict], describer: LocalDescriber) -> None:
    result = describer.describe(prepared(sample["poster-01"]["image"], CLAUDE_LIMITS))
    assert isinstance(result, Description) and isinstance(result.metadata, ImageMetadata)
    assert (result.input_tokens, result.output_tokens) == (0, 0)
    meta = result.metadata
    text = " ".join(meta.ocr_texts).upper()
    assert "SUMMER" in text and "SALE" in text and "50%" in text
    assert "text" in meta.tags
    assert "SUMMER" in meta.title.upper() and meta.title.lower().startswith("red")
    assert "red" in meta.tags and "landscape" in meta.tags
    assert meta.description and meta.keywords
    assert all(tag == tag.lower() for tag in meta.tags)


@pytest.mark.parametrize(
    ("poster", "words"),
    [("poster-02", ("OPEN", "HOURS")), ("poster-05", ("PARKING",))],
)
@pytest.mark.slow  # the sample catalogue (5-10 s), and OCR: 1-3 s an image
def test_ocr_reads_other_signs(
    sample: dict[str, dict], describer: LocalDescriber, poster: str, words: tuple[str, ...]
) -> None:
    meta = describer.describe(prepared(sample[poster]["image"], CLAUDE_LIMITS)).metadata
    text = " ".join(meta.ocr_texts).upper()
    assert all(word in text for word in words), meta.ocr_texts


@pytest.mark.slow  # the sample catalogue (5-10 s), and OCR: 1-3 s an image
def test_pictures_without_text_get_no_ocr_text(sample: dict[str, dict], describer: LocalDescriber) -> None:
    for image_id in ("hills-01", "product-02"):
        meta = describer.describe(prepared(sample[image_id]["image"], CLAUDE_LIMITS)).metadata
        assert meta.ocr_texts == [] and "text" not in meta.tags, (image_id, meta)


@pytest.mark.slow  # the sample catalogue (5-10 s), and OCR: 1-3 s an image
def test_colour_brightness_and_orientation_tags(describer: LocalDescriber, sample: dict[str, dict]) -> None:
    red = describer.describe(prepared(solid((210, 25, 30), (400, 300)), CLAUDE_LIMITS)).metadata
    assert red.tags[0] == "red" and "blue" not in red.tags
    assert "landscape" in red.tags and red.ocr_texts == []
    assert red.title.startswith("Red landscape image")

    navy_portrait = describer.describe(prepared(solid((15, 25, 90), (300, 500)), CLAUDE_LIMITS)).metadata
    assert navy_portrait.tags[0] == "blue" and {"portrait", "dark"} <= set(navy_portrait.tags)

    white_square = describer.describe(prepared(solid((250, 250, 250), (300, 300)), CLAUDE_LIMITS)).metadata
    assert {"white", "square", "bright"} <= set(white_square.tags)

    mug = describer.describe(prepared(sample["product-01"]["image"], CLAUDE_LIMITS)).metadata  # red mug on white
    assert mug.tags[:2] == ["white", "red"]


@pytest.mark.slow  # OCR of the sample catalogue, twice (15-50 s)
def test_describer_is_deterministic_and_thread_safe(sample: dict[str, dict]) -> None:
    describer = LocalDescriber()
    images = [prepared(sample[i]["image"], CLAUDE_LIMITS) for i in ("poster-03", "poster-04")]
    serial = [describer.describe(image).metadata for image in images]
    fresh = LocalDescriber()  # its engine is built by whichever thread comes first
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(lambda image: fresh.describe(image).metadata, [*images, images[0]]))
    assert parallel == [*serial, serial[0]]
    assert "GRAND" in " ".join(serial[0].ocr_texts) and "COFFEE" in " ".join(serial[1].ocr_texts)


def test_undecodable_bytes_raise_image_error(describer: LocalDescriber, embedder: LocalEmbedder) -> None:
    junk = PreparedImage(data=b"not an image", media_type="image/png", width=10, height=10)
    with pytest.raises(ImageError):
        describer.describe(junk)
    with pytest.raises(ImageError):
        embedder.embed_image(junk)


# --------------------------------------------------------------------------------------------
# Embedder


@pytest.mark.slow  # the sample catalogue, generated for the module (5-10 s), embedded
@pytest.mark.parametrize("dim", [256, 384, 1024])
def test_vectors_are_float32_unit_and_of_the_configured_dim(dim: int, sample: dict[str, dict]) -> None:
    embedder = LocalEmbedder(dim=dim)
    assert isinstance(embedder, Embedder)
    assert embedder.dim == dim and embedder.model_id == f"local/visual-embed-v1-{dim}"
    assert embedder.image_limits == TITAN_LIMITS
    image = prepared(sample["sunset-01"]["image"], TITAN_LIMITS)
    for vector in (embedder.embed_image(image), embedder.embed_image(prepared(solid((128, 128, 128)), TITAN_LIMITS)),
                   embedder.embed_text("red sunset"), embedder.embed_text(""), embedder.embed_text("zzz qqq")):
        assert vector.dtype == np.float32 and vector.shape == (dim,)
        assert np.all(np.isfinite(vector))
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    # Deterministic across calls and instances.
    assert np.array_equal(embedder.embed_image(image), LocalEmbedder(dim=dim).embed_image(image))


def test_unsupported_dim_is_refused() -> None:
    with pytest.raises(ValueError):
        LocalEmbedder(dim=512)


@pytest.mark.slow  # the sample catalogue, generated for the module (5-10 s), embedded
def test_every_fabricated_variant_finds_its_original(sample: dict[str, dict], sample_vectors) -> None:
    ids, vectors = sample_vectors
    origin = {i: sample[i]["row"]["variant_of"] or i for i in ids}
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    variants = [i for i in ids if sample[i]["row"]["variant_of"]]
    assert len(variants) >= 6
    for k, image_id in enumerate(ids):
        if image_id not in variants:
            continue
        nearest = ids[int(np.argmax(similarity[k]))]
        assert origin[nearest] == origin[image_id], (image_id, nearest)
        # ...and by a margin over the closest unrelated image.
        related = [j for j, other in enumerate(ids) if other != image_id and origin[other] == origin[image_id]]
        same = max(similarity[k, j] for j in related)
        unrelated = max(similarity[k, j] for j, other in enumerate(ids) if origin[other] != origin[image_id])
        assert same > 0.9 and same - unrelated > 0.04, (image_id, same, unrelated)


@pytest.mark.slow  # the sample catalogue, generated for the module (5-10 s), embedded
def test_a_mirror_is_not_a_near_duplicate(sample: dict[str, dict], embedder: LocalEmbedder) -> None:
    image = sample["city-02"]["image"]
    original = embedder.embed_image(prepared(image, TITAN_LIMITS))
    mirror = embedder.embed_image(prepared(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), TITAN_LIMITS))
    resized = image.resize((image.width * 6 // 10, image.height * 6 // 10))
    small = embedder.embed_image(prepared(resized, TITAN_LIMITS))
    assert float(original @ small) > float(original @ mirror) + 0.05


@pytest.mark.slow  # the sample catalogue, generated for the module (5-10 s), embedded
def test_colour_queries_rank_images_of_that_colour_first(
    sample: dict[str, dict], sample_vectors, embedder: LocalEmbedder
) -> None:
    ids, vectors = sample_vectors
    score = dict(zip(ids, vectors @ embedder.embed_text("red")))
    assert score["poster-01"] > score["poster-03"]  # red poster above the blue one
    assert score["product-01"] > score["product-02"]  # red mug above the blue bottle
    assert max(score, key=score.get).startswith("poster-01")  # the red sign family comes first

    blue = dict(zip(ids, vectors @ embedder.embed_text("blue")))
    assert blue["poster-03"] > blue["poster-01"]
    assert max(blue, key=blue.get) == "poster-03"

    solids = {name: embedder.embed_image(prepared(solid(rgb), TITAN_LIMITS)) for name, rgb in
              {"red": (210, 30, 40), "blue": (40, 80, 200), "green": (40, 160, 60), "yellow": (245, 210, 40)}.items()}
    for word in solids:
        query = embedder.embed_text(f"a {word} picture")
        assert max(solids, key=lambda name: float(solids[name] @ query)) == word


def test_unknown_text_gets_a_defined_vector(embedder: LocalEmbedder) -> None:
    empty, unknown = embedder.embed_text(""), embedder.embed_text("invoice cat")
    assert np.array_equal(empty, unknown)  # no colour information: the neutral swatch
    assert not np.array_equal(empty, embedder.embed_text("red"))


@pytest.mark.slow  # the sample catalogue, generated for the module (5-10 s), embedded
def test_embedder_is_thread_safe(sample: dict[str, dict], embedder: LocalEmbedder) -> None:
    images = [prepared(sample[i]["image"], TITAN_LIMITS) for i in ("city-01", "abstract-02", "hills-03")]
    serial = [embedder.embed_image(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(embedder.embed_image, images * 3))
    for got, want in zip(parallel, serial * 3):
        assert np.array_equal(got, want)
