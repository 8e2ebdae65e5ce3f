"""A PNG checked by its chunks, and the pass-through that relies on it instead of a decode."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from media_enrichment.errors import ImageError
from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, prepare_images
from media_enrichment.images.pngwalk import walk_png

BOTH = (CLAUDE_LIMITS, TITAN_LIMITS)


def png(size=(64, 48), mode="RGB", **params) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels) if channels > 1 else (size[1], size[0]), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format="PNG", **params)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))



def test_a_saved_png_walks_intact_with_its_bit_depth():
    walk = walk_png(png())
    assert (walk.intact, walk.problem, walk.bit_depth, walk.exif, walk.animated) == (True, None, 8, False, False)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda d: d[: len(d) // 2], "cut short|truncated|no IEND"),
        (lambda d: d[:-12], "no IEND"),
        (lambda d: d + b"\x00" * 5, "5 bytes after IEND"),
        (lambda d: d[:60] + bytes([d[60] ^ 0xFF]) + d[61:], "CRC mismatch"),
        (lambda d: b"\x89PNG\r\n\x1a\n" + chunk(b"IEND", b""), "IHDR is not the first chunk"),
        (lambda d: d[:33] + chunk(b"IEND", b""), "no IDAT"),
        (lambda d: b"GIF89a" + d[6:], "no PNG signature"),
    ],
)
def test_a_damaged_png_is_not_intact(damage, problem):
    walk = walk_png(damage(png()))
    assert not walk.intact
    assert walk.problem is not None and re.search(problem, walk.problem), walk.problem


def test_exif_and_animation_are_reported():
    exif = Image.Exif()
    exif[0x0112] = 6
    assert walk_png(png(exif=exif.tobytes())).exif
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    assert walk_png(out.getvalue()).animated


def test_a_png_that_fits_goes_to_every_model_as_one_unchanged_object():
    data = png()
    facts, (for_claude, for_titan) = prepare_images(data, BOTH)
    assert for_claude is for_titan and for_claude.data is data
    assert (facts.width, facts.height, facts.media_type) == (64, 48, "image/png")
    assert for_claude.base64 is for_titan.base64  # encoded once


def forged(*, depth=8, extra=b"", after=b"", crc_ok=True) -> bytes:
    """An 8 x 8 RGB PNG with valid CRCs around an IDAT that is not a deflate stream."""
    ihdr = struct.pack(">IIBBBBB", 8, 8, depth, 2, 0, 0, 0)
    idat = chunk(b"IDAT", b"not deflate")
    if not crc_ok:
        idat = idat[:-4] + b"\x00\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"") + after


def test_the_fast_path_does_not_inflate_so_a_forged_deflate_stream_passes_to_the_service():
    # Only a decode would notice; the service refuses such an image with a
    # ValidationException (no tokens processed), which becomes a failure row.
    data = forged()
    _, (prepared, _) = prepare_images(data, BOTH)
    assert prepared.data == data
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(forged(after=b"junk"), id="bytes-after-IEND"),
        pytest.param(forged(crc_ok=False), id="a-broken-CRC"),
        pytest.param(forged(depth=16), id="16-bit"),
        pytest.param(forged(extra=chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00")), id="an-eXIf-chunk"),
        pytest.param(forged(extra=chunk(b"acTL", struct.pack(">II", 2, 0))), id="an-animation"),
    ],
)
def test_anything_doubtful_takes_the_decode_path(data):
    # The same forged stream, with one reason for doubt: now it is decoded, and refused.
    with pytest.raises(ImageError):
        prepare_images(data, BOTH)


def test_an_exif_rotated_png_is_decoded_and_turned_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    facts, (prepared, _) = prepare_images(png(size=(64, 48), exif=exif.tobytes()), BOTH)
    assert (facts.width, facts.height) == (48, 64)
    assert (prepared.width, prepared.height) == (48, 64)
    assert Image.open(io.BytesIO(prepared.data)).size == (48, 64)


@pytest.mark.slow
def test_a_forged_png_sent_as_it_is_is_refused_by_the_service_and_becomes_a_failure_row(aws_env, tmp_path):
    from media_enrichment.config import Settings
    from media_enrichment.pipeline.driver import open_run
    from media_enrichment.testing import BedrockServer
    from tests.helpers import write_catalog

    manifest = write_catalog(tmp_path / "cat", 2, extra_rows=[("forged", "forged.png")])
    (tmp_path / "cat" / "forged.png").write_bytes(forged())
    with BedrockServer() as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        settings = Settings(provider="bedrock", dataset=str(tmp_path / "ds"), embedding_dim=256)
        with open_run(settings, str(manifest), "run-forged") as run:
            plan = run.plan(run.load_catalog())
            staged = [run.run_chunk(items) for items in run.chunks(plan)]
            run.commit(staged, plan)
        outcomes = dict(server.counters.outcomes)
    failures = run.dataset.read_failures()
    row = failures[failures["image_id"] == "forged"].iloc[0]
    assert (row["stage"], row["error_type"], bool(row["permanent"])) == ("describe", "ValidationException", True)
    assert outcomes.get("validation") == 1  # refused once: the embedder was never asked
    assert set(run.dataset.read_assets()["image_id"]) == {"img0", "img1"}
