"""Comparison 6: preparing 12-megapixel JPEGs, naive Pillow against ``images.prepare_images``,
with the quality (PSNR) of what is sent. Called by ``benchmarks.run``."""

from __future__ import annotations

import io
import math
import statistics
import time
from typing import Any

from benchmarks.common import log

__all__ = ["compare_prepare"]


def _naive_claude(data: bytes) -> None:
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((1568, 1568))
    im.save(io.BytesIO(), "JPEG", quality=88)


def _naive_claude_titan(data: bytes) -> None:
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    titan = im.copy()
    titan.thumbnail((2048, 2048))
    titan.save(io.BytesIO(), "JPEG", quality=88)
    im.thumbnail((1568, 1568))
    im.save(io.BytesIO(), "JPEG", quality=88)


def _pipeline_claude(data: bytes) -> None:
    from media_enrichment.images import CLAUDE_LIMITS, prepare_images

    prepare_images(data, [CLAUDE_LIMITS])


def _pipeline_claude_lanczos(data: bytes) -> None:
    """The pipeline's path with LANCZOS as the last resampling step (before ``CHEAP_RESAMPLE_FROM``)."""
    from media_enrichment.images import CLAUDE_LIMITS, encode, prepare_images

    saved = encode.CHEAP_RESAMPLE_FROM
    encode.CHEAP_RESAMPLE_FROM = math.inf
    try:
        prepare_images(data, [CLAUDE_LIMITS])
    finally:
        encode.CHEAP_RESAMPLE_FROM = saved


def _pipeline_claude_titan(data: bytes) -> None:
    from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, prepare_images

    prepare_images(data, [CLAUDE_LIMITS, TITAN_LIMITS])


def _psnr(data: bytes) -> dict[str, Any]:
    """How far the Claude image sent is from a full-resolution LANCZOS resize of the original (dB).

    Measured for the pipeline's image and for the same path with LANCZOS as the last step (the
    resample before ``CHEAP_RESAMPLE_FROM`` existed); both include the JPEG encoding at quality 88.
    """
    import numpy as np
    from PIL import Image

    from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, encode, prepare_images

    def psnr(image: Any, reference: Any) -> float | None:
        with Image.open(io.BytesIO(image.data)) as sent:
            got = np.asarray(sent.convert("RGB"), dtype=np.float64)
        mse = float(np.mean((got - reference) ** 2))
        return round(10 * math.log10(255**2 / mse), 1) if mse else None

    _, (claude, titan) = prepare_images(data, [CLAUDE_LIMITS, TITAN_LIMITS])
    saved = encode.CHEAP_RESAMPLE_FROM
    encode.CHEAP_RESAMPLE_FROM = math.inf
    try:
        _, (lanczos,) = prepare_images(data, [CLAUDE_LIMITS])
    finally:
        encode.CHEAP_RESAMPLE_FROM = saved
    with Image.open(io.BytesIO(data)) as full:
        full = full.convert("RGB")
        reference = np.asarray(full.resize((claude.width, claude.height), Image.Resampling.LANCZOS), dtype=np.float64)
    return {
        "claude_size": [claude.width, claude.height],
        "titan_size": [titan.width, titan.height],
        "claude_psnr_db": psnr(claude, reference),
        "claude_psnr_db_lanczos_last_step": psnr(lanczos, reference),
    }


def compare_prepare(cfg: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.harness import make_photo_jpegs

    log(f"6. drawing {cfg['jpegs']} 12-megapixel JPEGs")
    jpegs = make_photo_jpegs(cfg["jpegs"])
    methods = {
        "naive_claude": _naive_claude,
        "pipeline_claude": _pipeline_claude,
        "pipeline_claude_lanczos": _pipeline_claude_lanczos,
        "naive_claude_titan": _naive_claude_titan,
        "pipeline_claude_titan": _pipeline_claude_titan,
    }
    names = list(methods)
    for fn in methods.values():  # warm up
        fn(jpegs[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    log(f"6. preparing them {cfg['rounds']} times with each method, interleaved")
    for r in range(cfg["rounds"]):
        for i, data in enumerate(jpegs):
            shift = (r + i) % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order: no method always first
                started = time.perf_counter()
                methods[name](data)
                times[name].append(time.perf_counter() - started)
    median_ms = {name: round(statistics.median(v) * 1000, 1) for name, v in times.items()}
    quality = [_psnr(data) for data in jpegs]
    return {
        "jpegs": len(jpegs),
        "megapixels": 12.0,
        "bytes": [len(d) for d in jpegs],
        "rounds": cfg["rounds"],
        "median_ms": median_ms,
        "speedup_claude": round(median_ms["naive_claude"] / median_ms["pipeline_claude"], 2),
        "speedup_claude_lanczos_last_step": round(median_ms["naive_claude"] / median_ms["pipeline_claude_lanczos"], 2),
        "speedup_claude_titan": round(median_ms["naive_claude_titan"] / median_ms["pipeline_claude_titan"], 2),
        "speedup_claude_titan_vs_naive_claude": round(median_ms["naive_claude"] / median_ms["pipeline_claude_titan"], 2),
        "quality": quality,
    }
