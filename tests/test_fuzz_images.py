"""Random and damaged image bytes: ``prepare_images`` returns prepared images or raises an
``ImageError``, never anything else, and quickly (an image file is untrusted input)."""

from __future__ import annotations

import io
import time

import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from PIL import Image

from media_enrichment.errors import ImageError
from media_enrichment.images import (
    CLAUDE_LIMITS,
    TITAN_LIMITS,
    prepare_images,
    sniff_media_type,
)
from tests.helpers import fuzz_settings

#: Seconds one preparation may take, far above what these small images need (a bound).
BOUND_S = 3.0
FUZZ = fuzz_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = [CLAUDE_LIMITS, TITAN_LIMITS]


def _encoded(fmt: str, mode: str = "RGB", **params) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    im = Image.fromarray(pixels, "RGB").convert(mode)
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue()


SAMPLES = {
    "png": _encoded("PNG"),
    "png-rgba": _encoded("PNG", "RGBA"),
    "png-palette": _encoded("PNG", "P"),
    "jpeg": _encoded("JPEG", quality=80),
    "jpeg-progressive": _encoded("JPEG", progressive=True),
    "gif": _encoded("GIF", "P"),
    "webp": _encoded("WEBP"),
    "bmp": _encoded("BMP"),
    "tiff": _encoded("TIFF"),
}


def _prepare(data: bytes) -> None:
    started = time.perf_counter()
    try:
        facts, prepared = prepare_images(data, LIMITS)
    except ImageError:
        prepared = None  # anything else propagates and fails the test
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND_S, f"preparing took {elapsed:.1f} s"
    if prepared is not None:
        assert len(prepared) == len(LIMITS) and facts.width > 0 and facts.height > 0
        for image, limits in zip(prepared, LIMITS):
            assert image.data and sniff_media_type(image.data) == image.media_type
            assert image.media_type in limits.media_types
            assert max(image.width, image.height) <= limits.max_long_edge


def test_the_samples_prepare():
    for name, data in SAMPLES.items():
        facts, _prepared = prepare_images(data, LIMITS)
        assert (facts.width, facts.height) == (32, 24), name


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(data):
    _prepare(data)


@FUZZ
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP"]),
    tail=st.binary(max_size=512),
)
def test_a_magic_number_then_junk(name, prefix, tail):
    _prepare((prefix or SAMPLES[name][:16]) + tail)


@FUZZ
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_flipped_bytes(name, flips):
    data = bytearray(SAMPLES[name])
    for position, value in flips:
        data[position % len(data)] = value
    _prepare(bytes(data))


@FUZZ
@given(name=st.sampled_from(sorted(SAMPLES)), cut=st.floats(0.0, 1.0, exclude_max=True), junk=st.binary(max_size=64))
def test_truncated_files(name, cut, junk):
    data = SAMPLES[name]
    _prepare(data[: int(len(data) * cut)] + junk)
