"""Throughput at the service quota, against the notebook's method: the four comparisons of issue 4.

    .venv/bin/python -m benchmarks.run            # full run, ~8-10 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick    # smaller sizes, ~2 minutes

Prints a table and writes ``benchmarks/results.json``. Every comparison is measured side by
side in one run, against the project's Bedrock-compatible server started in a separate process
(``python -m media_enrichment.testing.bedrock_server``). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "images": 1000,  # comparisons 1 and 2
    "notebook_throttle_images": 300,  # the notebook's run under throttling (its loss rate per image)
    "jpegs": 4,  # comparison 3: 12 MP JPEGs, each prepared `rounds` times by each method
    "rounds": 5,
    "memory_sizes": (2000, 20000),  # comparison 4
    "memory_repeats": 2,  # each size runs this many times, alternating; the median peak counts
}
QUICK = {
    "images": 150,
    "notebook_throttle_images": 50,
    "jpegs": 2,
    "rounds": 3,
    "memory_sizes": (300, 3000),
    "memory_repeats": 1,
}
SERVER = {
    "claude-latency": 0.5,
    "titan-latency": 0.05,
    "latency-jitter": 0.1,
    "rpm-quota": 3000,  # per model id
    # The per-minute quota is enforced over a sliding 20 s window (1000 requests in any 20 s):
    # a run of ~20 s meets it at its rate, and a client at 95 % of the rate with one second of
    # burst stays within it (burst + 0.95 * rate * W <= rate * W for W >= 20 s).
    "quota-window": 20,
    "seed": 1,
}
RATE_SHARE = 0.95  # the pipeline's rpm limits, as a share of the quota
CONCURRENCY = 40  # chunk tasks at once: rpm/60 * (0.5 + 0.05 s) ~ 26 needed, plus headroom
THROTTLE_RATE = 0.05
TARGETS = {"quota_share": 0.90, "speedup": 5.0, "lost": 0, "prepare_speedup": 3.0, "memory_ratio": 1.2}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# 1 and 2: throughput and throttling
# ---------------------------------------------------------------------------------------------


def _pipeline(driver: str, manifest: Path, workdir: Path, images: int) -> tuple[Any, dict[str, Any]]:
    from benchmarks.harness import run_flow, run_pipeline

    quota = SERVER["rpm-quota"]
    rpm = math.floor(quota * RATE_SHARE)
    chunk_size = max(1, math.ceil(images / CONCURRENCY))  # every chunk task busy until the end
    config = {
        "driver": driver,
        "concurrency": CONCURRENCY,
        "chunk_size": chunk_size,
        "describer_rpm": rpm,
        "embedder_rpm": rpm,
        "adaptive_concurrency": True,
    }
    if driver == "flow":
        result = run_flow(manifest, workdir, concurrency=CONCURRENCY, chunk_size=chunk_size, describer_rpm=rpm, embedder_rpm=rpm)
        return result, config
    result, describer_gate, embedder_gate = run_pipeline(
        manifest, workdir, concurrency=CONCURRENCY, chunk_size=chunk_size, describer_rpm=rpm, embedder_rpm=rpm
    )
    result.extra["describer_gate"] = describer_gate.stats()
    result.extra["embedder_gate"] = embedder_gate.stats()
    return result, config


def _measured(server: Any, result: Any) -> dict[str, Any]:
    from benchmarks.harness import server_summary

    summary = server_summary(server.counters(log=True), quota=SERVER["rpm-quota"], images=result.images)
    summary["extra_calls"] -= int(result.extra.get("access_checks", 0))
    server.reset()
    return {**result.as_dict(), "server": summary}


def compare_throughput(cfg: dict[str, Any], workdir: Path, driver: str) -> dict[str, Any]:
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, run_notebook, use_endpoint

    n = cfg["images"]
    manifest = make_catalog(workdir / "catalog-256", n, size=256)
    paths = manifest_paths(manifest)
    out: dict[str, Any] = {"images": n, "server": dict(SERVER)}
    with ServerProcess(**SERVER) as server:
        use_endpoint(server.endpoint)
        log(f"1. notebook method on {n} images (ThreadPool(5) describe, then sequential embed)")
        out["notebook"] = _measured(server, run_notebook(paths))
        time.sleep(1)
        log(f"1. pipeline ({driver}) on the same {n} images")
        result, config = _pipeline(driver, manifest, workdir / "run-1", n)
        out["pipeline"] = _measured(server, result)
        out["pipeline_config"] = config
    nb, pipe = out["notebook"], out["pipeline"]
    out["speedup"] = round(nb["seconds"] / pipe["seconds"], 2)
    out["quota_share"] = pipe["server"]["claude_quota_share"]
    out["notebook_quota_share"] = nb["server"]["claude_quota_share"]
    return out


def compare_throttling(cfg: dict[str, Any], workdir: Path, driver: str) -> dict[str, Any]:
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, run_notebook, use_endpoint

    n = cfg["images"]
    manifest = make_catalog(workdir / "catalog-256", n, size=256)
    flags = {**SERVER, "throttle-rate": THROTTLE_RATE, "seed": 2}
    out: dict[str, Any] = {"images": n, "throttle_rate": THROTTLE_RATE, "server": flags}
    with ServerProcess(**flags) as server:
        use_endpoint(server.endpoint)
        log(f"2. pipeline ({driver}) on {n} images with {THROTTLE_RATE:.0%} of requests throttled")
        result, config = _pipeline(driver, manifest, workdir / "run-2", n)
        out["pipeline"] = _measured(server, result)
        out["pipeline_config"] = config
        k = cfg["notebook_throttle_images"]
        log(f"2. notebook method on the first {k} images with {THROTTLE_RATE:.0%} throttled")
        out["notebook"] = _measured(server, run_notebook(manifest_paths(manifest)[:k]))
    pipe = out["pipeline"]
    out["lost"] = pipe["lost"]
    out["extra_calls"] = pipe["server"]["extra_calls"]
    out["quota_share"] = pipe["server"]["claude_quota_share"]
    return out


# ---------------------------------------------------------------------------------------------
# 3: preparing 12-megapixel JPEGs
# ---------------------------------------------------------------------------------------------


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

    log(f"3. drawing {cfg['jpegs']} 12-megapixel JPEGs")
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
    log(f"3. preparing them {cfg['rounds']} times with each method, interleaved")
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


# ---------------------------------------------------------------------------------------------
# 4: peak memory against catalogue size
# ---------------------------------------------------------------------------------------------


def compare_memory(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from benchmarks.harness import ServerProcess, make_catalog

    small, big = cfg["memory_sizes"]
    repeats = cfg["memory_repeats"]
    log(f"4. writing {big} small PNGs")
    manifest = make_catalog(workdir / "catalog-64", big, size=64, seed=9)
    lines = manifest.read_text().splitlines(keepends=True)
    small_manifest = manifest.with_name("catalog-small.csv")
    small_manifest.write_text("".join(lines[: small + 1]))
    runs: dict[str, list[dict[str, Any]]] = {str(small): [], str(big): []}
    with ServerProcess(**{"log-size": 100}) as server:  # no latency, no quota
        for rep in range(repeats):  # sizes alternate, so a drift of the machine touches both
            for size, path in ((small, small_manifest), (big, manifest)):
                log(f"4. {size} images through the pipeline in a fresh process ({rep + 1}/{repeats})")
                shutil.rmtree(workdir / f"memory-{size}", ignore_errors=True)  # a kept --workdir would skip every image
                cmd = [
                    sys.executable, "-m", "benchmarks.memory_probe", "--manifest", str(path),
                    "--endpoint", server.endpoint, "--workdir", str(workdir / f"memory-{size}"), "--merge",
                ]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1200)
                if done.returncode != 0:
                    raise RuntimeError(f"memory probe for {size} images failed:\n{done.stderr[-3000:]}")
                runs[str(size)].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def median(size: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[str(size)])

    return {
        "sizes": [small, big],
        "repeats": repeats,
        "runs": runs,
        "enriched_peak_mb": [median(small, "enriched_peak_mb"), median(big, "enriched_peak_mb")],
        "peak_mb": [median(small, "peak_mb"), median(big, "peak_mb")],
        "peak_ratio": round(median(big, "peak_mb") / median(small, "peak_mb"), 3),
        "enrich_peak_ratio": round(median(big, "enriched_peak_mb") / median(small, "enriched_peak_mb"), 3),
        "growth_mb": round(median(big, "peak_mb") - median(small, "peak_mb"), 1),
    }


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}{unit}" if unit != "%" else f"{value * 100:.1f}%"
    return f"{value}{unit}"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    quick = results.get("mode") == "quick"

    def add(comparison: str, measure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        # Quick runs are too short for the targets: their rows are shown, not judged.
        met = "" if ok is None else ("-" if quick else ("yes" if ok else "NO"))
        rows.append((comparison, measure, value, target, met))

    c = results["comparisons"]
    if "throughput" in c:
        t = c["throughput"]
        nb, pipe = t["notebook"], t["pipeline"]
        name = f"1 throughput, {t['images']} images"
        add(name, "notebook wall-clock", f"{nb['seconds']:.1f} s ({nb['ok']} ok)")
        add(name, f"pipeline wall-clock ({pipe.get('driver', 'chunks')})", f"{pipe['seconds']:.1f} s ({pipe['ok']} ok)")
        add(name, "speedup (notebook / pipeline)", f"{t['speedup']:.2f}x", ">= 5x", t["speedup"] >= TARGETS["speedup"])
        add(name, "Claude quota share, pipeline", _fmt(t["quota_share"], "%"), ">= 90%",
            (t["quota_share"] or 0) >= TARGETS["quota_share"])
        add(name, "Claude quota share, notebook", _fmt(t["notebook_quota_share"], "%"))
        add(name, "quota 429s, pipeline", str(pipe["server"]["claude_quota_429"] + pipe["server"]["titan_quota_429"]))
    if "throttling" in c:
        t = c["throttling"]
        pipe, nb = t["pipeline"], t["notebook"]
        name = f"2 {t['throttle_rate']:.0%} throttled, {t['images']} images"
        add(name, "pipeline images lost", str(t["lost"]), "0", t["lost"] == 0)
        calls = 2 * t["images"]
        add(name, "pipeline extra calls (retried 429s)", f"{t['extra_calls']} ({t['extra_calls'] / calls:.1%} of {calls} calls)")
        add(name, "pipeline wall-clock / quota share", f"{pipe['seconds']:.1f} s / {_fmt(t['quota_share'], '%')}")
        add(name, f"notebook ({nb['images']} images): lost / extra calls", f"{nb['lost']} / {nb['server']['extra_calls']}")
    if "prepare" in c:
        p = c["prepare"]
        m = p["median_ms"]
        name = f"3 12 MP JPEG prep, {p['jpegs']}x{p['rounds']}"
        add(name, "naive Claude / pipeline Claude", f"{m['naive_claude']:.0f} / {m['pipeline_claude']:.0f} ms")
        add(name, "speedup, Claude", f"{p['speedup_claude']:.2f}x", ">= 3x", p["speedup_claude"] >= TARGETS["prepare_speedup"])
        add(name, "  same path, LANCZOS last step", f"{m['pipeline_claude_lanczos']:.0f} ms, {p['speedup_claude_lanczos_last_step']:.2f}x")
        add(name, "naive / pipeline, Claude+Titan", f"{m['naive_claude_titan']:.0f} / {m['pipeline_claude_titan']:.0f} ms")
        add(name, "speedup, Claude+Titan", f"{p['speedup_claude_titan']:.2f}x", ">= 3x",
            p["speedup_claude_titan"] >= TARGETS["prepare_speedup"])
        psnr = [q["claude_psnr_db"] for q in p["quality"] if q["claude_psnr_db"]]
        before = [q["claude_psnr_db_lanczos_last_step"] for q in p["quality"] if q["claude_psnr_db_lanczos_last_step"]]
        if psnr and before:
            add(name, "PSNR vs full-res LANCZOS (min): sent / LANCZOS last step", f"{min(psnr):.1f} / {min(before):.1f} dB")
    if "memory" in c:
        mem = c["memory"]
        small, big = mem["sizes"]
        name = f"4 peak memory, {small} vs {big}"
        enriched, peak = mem["enriched_peak_mb"], mem["peak_mb"]
        each = " ".join(
            f"{size}: " + "/".join(f"{r['peak_mb']:.0f}" for r in mem["runs"][str(size)]) for size in (small, big)
        )
        add(name, f"peak RSS, enrichment path (median of {mem['repeats']})", f"{enriched[0]:.0f} / {enriched[1]:.0f} MiB")
        add(name, "ratio, enrichment path", f"{mem['enrich_peak_ratio']:.3f}", "<= 1.2",
            mem["enrich_peak_ratio"] <= TARGETS["memory_ratio"])
        add(name, f"peak RSS, + Delta commits (median of {mem['repeats']})", f"{peak[0]:.0f} / {peak[1]:.0f} MiB")
        add(name, "peak RSS of each run, + Delta commits", each + " MiB")
        add(name, "ratio, + Delta commits", f"{mem['peak_ratio']:.3f}", "<= 1.2", mem["peak_ratio"] <= TARGETS["memory_ratio"])
    header = ("comparison", "measure", "value", "target", "met")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    if quick:
        lines.append("(quick run: sizes too small for the targets, which are judged on the full run only)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of issue 4 (see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~2 minutes)")
    parser.add_argument(
        "--driver", choices=("flow", "chunks"), default="flow",
        help="comparisons 1-2: the real Prefect flow (default), or the library's run driver (open_run, run_chunk, commit) over a thread pool of chunks, without Prefect",
    )
    parser.add_argument("--only", default="1,2,3,4", help="comparisons to run, e.g. 1,3")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",")}

    scratch = tempfile.TemporaryDirectory(prefix="media-enrich-bench-") if args.workdir is None else None
    workdir = Path(scratch.name) if scratch else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    import PIL

    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pillow": PIL.__version__,
        },
        "config": {**cfg, "server": SERVER, "rate_share": RATE_SHARE, "concurrency": CONCURRENCY, "driver": args.driver},
        "targets": TARGETS,
        "comparisons": {},
    }
    started = time.perf_counter()
    try:
        steps = (
            ("1", "throughput", lambda: compare_throughput(cfg, workdir, args.driver)),
            ("2", "throttling", lambda: compare_throttling(cfg, workdir, args.driver)),
            ("3", "prepare", lambda: compare_prepare(cfg)),
            ("4", "memory", lambda: compare_memory(cfg, workdir)),
        )
        for key, name, step in steps:
            if key in only:
                results["comparisons"][name] = step()
        results["seconds"] = round(time.perf_counter() - started, 1)
        text = table(results)
        results["table"] = text.splitlines()
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(text)
        print(f"\n{results['mode']} run in {results['seconds']:.0f} s; results in {args.out}")
    finally:
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
