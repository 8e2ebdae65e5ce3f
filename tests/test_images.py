"""Image preparation: awkward inputs are either brought within each model's limits or refused
with an ImageError that names the problem. Every input is generated here, in tmp_path."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from media_enrichment.errors import ImageError
from media_enrichment.images import (
    CLAUDE_LIMITS,
    TITAN_LIMITS,
    ImageLimits,
    PreparedImage,
    decode_rgb,
    inspect_image,
    prepare_image,
    prepare_images,
    sniff_media_type,
)

BOTH = (CLAUDE_LIMITS, TITAN_LIMITS)
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --- input generators ----------------------------------------------------------------------


def save(tmp_path: Path, name: str, im: Image.Image, fmt: str, **params) -> bytes:
    """Write ``im`` to tmp_path/name with Pillow and return the file's bytes."""
    path = tmp_path / name
    im.save(path, fmt, **params)
    return path.read_bytes()


def write(tmp_path: Path, name: str, data: bytes) -> bytes:
    path = tmp_path / name
    path.write_bytes(data)
    return path.read_bytes()


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth random colour field: JPEG-compressible like a photo, not a flat graphic."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return small.resize(size, Image.Resampling.BILINEAR)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (1-bit grey) with one row of data."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row, 9))
        + chunk(b"IEND", b"")
    )


# --- helpers -------------------------------------------------------------------------------


def assert_within(p: PreparedImage, lim: ImageLimits) -> np.ndarray:
    """Assert ``p`` respects ``lim`` and its media type matches its bytes; return its RGB pixels."""
    assert max(p.width, p.height) <= lim.max_long_edge
    assert p.width * p.height <= lim.max_pixels
    assert len(p.data) <= lim.max_bytes
    assert p.media_type in lim.media_types
    assert sniff_media_type(p.data) == p.media_type
    rgb = decode_rgb(p)
    assert rgb.size == (p.width, p.height)
    return np.asarray(rgb).astype(int)


def near(pixel, colour, tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))


# --- media types and facts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
        ("BMP", "image/bmp"),
    ],
)
def test_sniff_every_supported_format(tmp_path, fmt, media_type):
    data = save(tmp_path, "img.bin", photo((40, 30)), fmt)
    assert sniff_media_type(data) == media_type
    facts = inspect_image(data)
    assert (facts.media_type, facts.width, facts.height) == (media_type, 40, 30)


def test_sniff_rejects_non_images():
    assert sniff_media_type(b"") is None
    assert sniff_media_type(b"BMW cars are fast, says this text file.") is None
    assert sniff_media_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None


def test_png_named_jpg_is_png_and_hash_is_of_original_bytes(tmp_path):
    data = save(tmp_path, "actually_a_png.jpg", photo((64, 48)), "PNG")
    facts = inspect_image(data)
    assert facts.media_type == "image/png"
    assert facts.content_sha256 == hashlib.sha256(data).hexdigest()
    assert facts.size_bytes == len(data)
    p = prepare_image(data, CLAUDE_LIMITS)
    assert p.media_type == "image/png" == sniff_media_type(p.data)


def test_prepare_returns_the_same_facts_as_inspect(tmp_path):
    data = save(tmp_path, "p.jpg", photo((3000, 2000)), "JPEG", quality=90)
    facts, prepared = prepare_images(data, BOTH)
    assert facts == inspect_image(data)
    assert len(prepared) == 2


# --- awkward inputs that must be prepared --------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    im = Image.new("CMYK", (400, 300), (0, 255, 255, 0))  # red in CMYK
    data = save(tmp_path, "cmyk.jpg", im, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    for lim in BOTH:
        px = assert_within(prepare_image(data, lim), lim)
        assert near(px[150, 200], RED), px[150, 200]


def test_png_with_alpha_keeps_alpha_as_png_and_flattens_on_white_as_jpeg(tmp_path):
    im = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # transparent black: must not show black
    ImageDraw.Draw(im).rectangle((0, 0, 149, 199), fill=(*BLUE, 255))
    data = save(tmp_path, "alpha.png", im, "PNG")

    p = prepare_image(data, CLAUDE_LIMITS)
    assert p.media_type == "image/png"
    assert Image.open(io.BytesIO(p.data)).mode == "RGBA"
    px = assert_within(p, CLAUDE_LIMITS)
    assert near(px[100, 50], BLUE) and near(px[100, 250], WHITE)

    jpeg_only = ImageLimits("jpeg-only", 1000, 1_000_000, 1_000_000, ("image/jpeg",))
    px = assert_within(prepare_image(data, jpeg_only), jpeg_only)
    assert near(px[100, 50], BLUE) and near(px[100, 250], WHITE)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (64, 1))
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    data = save(tmp_path, "deep.png", im, "PNG")
    for lim in BOTH:
        px = assert_within(prepare_image(data, lim), lim)[:, :, 0]
        row = px[32]
        assert row[0] < 10 and row[-1] > 245
        assert 100 < row[256] < 156  # half way along the ramp is mid grey, not white
        assert np.all(np.diff(row[::32]) > 0)  # still a rising gradient
        assert 0.3 < px.mean() / 255 < 0.7


def test_palette_gif_with_transparency(tmp_path):
    im = Image.new("P", (120, 80), 0)
    im.putpalette([0, 0, 0, *RED] + [0] * 762)
    ImageDraw.Draw(im).rectangle((0, 0, 59, 79), fill=1)
    data = save(tmp_path, "pal.gif", im, "GIF", transparency=0)
    for lim in BOTH:
        px = assert_within(prepare_image(data, lim), lim)
        assert near(px[40, 20], RED) and near(px[40, 100], WHITE)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (100, 100), c) for c in (RED, GREEN, BLUE)]
    data = save(
        tmp_path, "anim.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100
    )
    assert Image.open(io.BytesIO(data)).n_frames == 3
    for lim in BOTH:
        p = prepare_image(data, lim)
        assert p.data != data  # not passed through as an animation
        px = assert_within(p, lim)
        assert near(px[50, 50], RED)


def test_animated_webp_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (100, 100), c) for c in (GREEN, RED)]
    data = save(
        tmp_path, "anim.webp", frames[0], "WEBP", save_all=True, append_images=frames[1:]
    )
    for lim in BOTH:
        assert near(assert_within(prepare_image(data, lim), lim)[50, 50], GREEN)


def test_exif_orientation_6_rotates_content_and_swaps_dims(tmp_path):
    im = Image.new("RGB", (400, 200), BLUE)  # stored landscape
    ImageDraw.Draw(im).rectangle((0, 0, 79, 39), fill=RED)  # red at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    data = save(tmp_path, "rot.jpg", im, "JPEG", exif=exif.tobytes(), quality=95)

    facts, prepared = prepare_images(data, BOTH)
    assert (facts.width, facts.height) == (200, 400)
    assert inspect_image(data) == facts
    for p, lim in zip(prepared, BOTH, strict=True):
        assert (p.width, p.height) == (200, 400)
        px = assert_within(p, lim)
        assert near(px[10, 190], RED)  # stored top-left is displayed top-right
        assert near(px[10, 10], BLUE) and near(px[390, 10], BLUE)


def test_webp_passes_through_where_accepted(tmp_path):
    data = save(tmp_path, "photo.webp", photo((640, 480)), "WEBP", quality=80)
    claude, titan = prepare_images(data, BOTH)[1]
    assert claude.media_type == "image/webp" and claude.data == data
    assert titan.media_type == "image/jpeg"  # Titan takes only JPEG/PNG
    for p, lim in ((claude, CLAUDE_LIMITS), (titan, TITAN_LIMITS)):
        assert_within(p, lim)


def test_huge_jpeg_fits_claude_and_titan(tmp_path):
    im = Image.new("RGB", (9000, 6000), (30, 90, 160))
    ImageDraw.Draw(im).ellipse((1000, 1000, 8000, 5000), fill=(220, 180, 40))
    data = save(tmp_path, "huge.jpg", im, "JPEG", quality=85)
    facts, (claude, titan) = prepare_images(data, BOTH)
    assert (facts.width, facts.height) == (9000, 6000)
    assert_within(claude, CLAUDE_LIMITS)
    assert claude.width * claude.height > 1_100_000  # scaled to the limit, not far below it
    assert abs(claude.width / claude.height - 1.5) < 0.01
    assert_within(titan, TITAN_LIMITS)
    assert titan.media_type in ("image/jpeg", "image/png") and titan.width == 2048
    assert near(decode_rgb(titan).getpixel((1024, 683)), (220, 180, 40))


def test_screenshot_png_stays_png_and_photo_png_becomes_jpeg(tmp_path):
    shot = Image.new("RGB", (1200, 800), WHITE)
    ImageDraw.Draw(shot).text((20, 20), "Invoice #123  total 42.00 EUR", fill=(0, 0, 0))
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (800, 1200, 3), np.uint8))
    cases = (("shot.png", shot, "image/png"), ("noise.png", noisy, "image/jpeg"))
    for name, im, expected in cases:
        data = save(tmp_path, name, im, "PNG")
        p = prepare_image(data, CLAUDE_LIMITS)
        assert p.media_type == expected, name
        assert_within(p, CLAUDE_LIMITS)


def test_reencodes_smaller_until_max_bytes_fits(tmp_path):
    noisy = Image.fromarray(np.random.default_rng(2).integers(0, 256, (900, 1200, 3), np.uint8))
    data = save(tmp_path, "noise.jpg", noisy, "JPEG", quality=95)
    tight = ImageLimits("tight", 1568, 1_150_000, 60_000, ("image/jpeg", "image/png"))
    assert_within(prepare_image(data, tight), tight)


def test_small_jpeg_within_limits_is_passed_through(tmp_path):
    data = save(tmp_path, "small.jpg", photo((800, 600)), "JPEG", quality=90)
    for p in prepare_images(data, BOTH)[1]:
        assert p.data == data and (p.width, p.height) == (800, 600)


# --- awkward inputs that must be refused ---------------------------------------------------


@pytest.mark.parametrize("call", [inspect_image, lambda d: prepare_images(d, BOTH)])
def test_zero_byte_file(tmp_path, call):
    with pytest.raises(ImageError, match="empty"):
        call(write(tmp_path, "empty.jpg", b""))


@pytest.mark.parametrize("call", [inspect_image, lambda d: prepare_images(d, BOTH)])
def test_text_file_named_jpg(tmp_path, call):
    data = write(tmp_path, "notes.jpg", b"just some notes, definitely not a picture\n")
    with pytest.raises(ImageError, match="not an image"):
        call(data)


@pytest.mark.parametrize("call", [inspect_image, lambda d: prepare_images(d, BOTH)])
def test_truncated_jpeg(tmp_path, call):
    full = save(tmp_path, "full.jpg", photo((1200, 900)), "JPEG", quality=90)
    data = write(tmp_path, "truncated.jpg", full[: len(full) // 2])
    with pytest.raises(ImageError, match="truncated"):
        call(data)


def test_truncated_png(tmp_path):
    full = save(tmp_path, "full.png", photo((300, 200)), "PNG")
    with pytest.raises(ImageError, match="truncated|corrupt"):
        prepare_images(write(tmp_path, "cut.png", full[: len(full) // 2]), BOTH)


@pytest.mark.parametrize("call", [inspect_image, lambda d: prepare_images(d, BOTH)])
def test_decompression_bomb_png_header(tmp_path, call):
    data = write(tmp_path, "bomb.png", png_header_only(30_000, 30_000))
    assert len(data) < 10_000
    ceiling = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="decompression bomb"):
        call(data)
    assert Image.MAX_IMAGE_PIXELS == ceiling  # Pillow's global is left alone


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_becomes_image_error(tmp_path):
    data = write(tmp_path, "bomb.png", png_header_only(10_000, 10_000))
    with pytest.raises(ImageError, match="decompression bomb"):
        prepare_images(data, BOTH)


def test_pixel_ceiling_and_side_limit_are_parameters(tmp_path):
    data = write(tmp_path, "big.png", png_header_only(2_000, 2_000))
    with pytest.raises(ImageError, match="decompression bomb.*4000000 pixels"):
        prepare_images(data, BOTH, max_source_pixels=1_000_000)
    strip = write(tmp_path, "strip.png", png_header_only(40_000, 2))
    with pytest.raises(ImageError, match="side exceeds"):
        inspect_image(strip)


def test_decode_rgb_refuses_garbage():
    with pytest.raises(ImageError, match="does not decode"):
        decode_rgb(PreparedImage(b"\xff\xd8\xff garbage", "image/jpeg", 1, 1))
