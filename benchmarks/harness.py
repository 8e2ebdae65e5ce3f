"""Pieces of the benchmarks: the server in its own process, generated images, the two methods.

Nothing here is a test double of the library: the notebook's method and the pipeline both use
the project's Bedrock provider classes over the real boto3 client, against
``media_enrichment.testing.bedrock_server`` running in a separate process (so the client and
the server do not share a GIL).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1
TITAN = "amazon.titan-embed-image-v1"


# ---------------------------------------------------------------------------------------------
# The server, in another process
# ---------------------------------------------------------------------------------------------


class ServerProcess:
    """``python -m media_enrichment.testing.bedrock_server`` with the given flags; a context manager."""

    def __init__(self, **flags: Any):
        self.flags = {"lifetime": 1800, "log-size": 50_000, **flags}
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def __enter__(self) -> ServerProcess:
        args = [sys.executable, "-m", "media_enrichment.testing.bedrock_server", "--port", "0"]
        for key, value in self.flags.items():
            if value is not None:
                args += [f"--{key}", str(value)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not line or "=" not in line[0]:
            self.proc.kill()
            raise RuntimeError(f"the Bedrock test server did not start: {line!r}")
        self.endpoint = line[0].strip().split("=", 1)[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def counters(self, *, log: bool = False) -> dict[str, Any]:
        url = f"{self.endpoint}/_test/counters" + ("?log=1" if log else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/_test/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def env(self) -> dict[str, str]:
        return aws_env(self.endpoint)


def aws_env(endpoint: str) -> dict[str, str]:
    """Environment pointing boto3 at ``endpoint`` with fake credentials and no user config."""
    return {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def use_endpoint(endpoint: str) -> None:
    """Point this process's boto3 at ``endpoint`` (and drop settings from the environment)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MEDIA_ENRICH_")):
            del os.environ[name]
    os.environ.update(aws_env(endpoint))


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def make_png(seed: int, size: int) -> bytes:
    """A distinct, compressible PNG: a two-colour gradient with a few rectangles."""
    rng = np.random.default_rng(seed)
    c0, c1, c2 = rng.integers(0, 256, (3, 3)).astype(np.float32)
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :, None]
    pixels = c0 * (1 - y) * (1 - x) + c1 * y + c2 * x * (1 - y)
    for _ in range(3):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(4, max(5, size // 3), 2)
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def make_catalog(folder: Path, count: int, *, size: int, seed: int = 0) -> Path:
    """Write ``count`` distinct PNGs and a manifest ``catalog.csv``; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "catalog.csv"
    if manifest.exists() and sum(1 for _ in manifest.open()) == count + 1:
        return manifest  # already made by an earlier step of this run
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image_id", "path"])
        for i in range(count):
            name = f"img{i:06d}.png"
            (folder / name).write_bytes(make_png(seed * 1_000_003 + i, size))
            writer.writerow([name, name])
    return manifest


def manifest_paths(manifest: Path) -> list[str]:
    with manifest.open() as f:
        return [str(manifest.parent / row["path"]) for row in csv.DictReader(f)]


def make_photo_jpegs(count: int, size: tuple[int, int] = (4000, 3000)) -> list[bytes]:
    """12-megapixel photo-like JPEGs (quality 90) drawn by the sample catalogue's painters."""
    import random

    from media_enrichment.sample.painters import draw_abstract, draw_city, draw_landscape, draw_sunset

    painters = [draw_landscape, draw_city, draw_sunset, draw_abstract]
    out = []
    for i in range(count):
        image = painters[i % len(painters)](random.Random(i), np.random.default_rng(i), size).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


# ---------------------------------------------------------------------------------------------
# Server-side measurements
# ---------------------------------------------------------------------------------------------

#: Outcomes of requests that did not count against the quota (refused by it).
NOT_ADMITTED = {"quota"}


def steady_rpm(times: Sequence[float], *, low: float = 0.25, high: float = 0.75) -> float | None:
    """Requests per minute in the steady part of a run: between the arrival of its ``low`` and
    ``high`` quantile requests (by default the middle half of them), which leaves out the
    opening (the windows growing, the buckets starting empty) and the tail of the last chunks."""
    times = sorted(times)
    n = len(times)
    if n < 100:  # a shorter run is mostly its opening and its tail
        return None
    i, j = int(n * low), int(n * high)
    span = times[j] - times[i]
    return (j - i) / span * 60.0 if span > 0 else None


def whole_rpm(times: Sequence[float]) -> float | None:
    """Requests per minute over the whole run: from the first request's arrival to the last's,
    opening and tail included (``n - 1`` intervals)."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span * 60.0 if span > 0 else None


def server_summary(snapshot: dict[str, Any], *, quota: int | None, images: int) -> dict[str, Any]:
    """Requests, outcomes, whole-run and steady admitted rates per model, and their share of the quota.

    The access checks (one tiny request per model before the first image) are left out of the
    rates: they are a fixed cost before the run's calls start.
    """
    log = snapshot.get("log") or []
    out: dict[str, Any] = {
        "requests": snapshot["total"],
        "outcomes": snapshot["outcomes"],
        "extra_calls": snapshot["total"] - 2 * images,
    }
    for name, model in (("claude", CLAUDE), ("titan", TITAN)):
        admitted = [at for m, outcome, at in log if m == model and outcome not in NOT_ADMITTED]
        admitted = sorted(admitted)[1:] if len(admitted) > images else sorted(admitted)  # the access check
        rpm = steady_rpm(admitted)
        whole = whole_rpm(admitted)
        out[f"{name}_requests"] = sum(1 for m, _, _ in log if m == model)
        out[f"{name}_quota_429"] = sum(1 for m, outcome, _ in log if m == model and outcome == "quota")
        out[f"{name}_steady_rpm"] = round(rpm, 1) if rpm else None
        out[f"{name}_whole_rpm"] = round(whole, 1) if whole else None
        out[f"{name}_quota_share"] = round(rpm / quota, 4) if rpm and quota else None
        # When the run's calls started and ended, in seconds since the server started.
        out[f"{name}_span_at"] = [admitted[0], admitted[-1]] if admitted else None
    return out


# ---------------------------------------------------------------------------------------------
# The two methods
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one method did with one catalogue."""

    method: str
    images: int
    seconds: float
    ok: int
    lost: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``time.monotonic()`` when the clock started and stopped (the timed part only), so that a
    #: ``CoreSampler`` can tell which process was busy while it ran.
    timed: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "lost": self.lost,
            **self.extra,
        }


def _settings(**values: Any):
    from media_enrichment.config import Settings

    base = dict(provider="bedrock", embedding_dim=1024, describer_model_id=CLAUDE, embedder_model_id=TITAN)
    base.update(values)
    return Settings(**base)


def run_notebook(paths: Sequence[str], *, threads: int = 5) -> RunResult:
    """The original notebook: ``ThreadPool(5)`` describes every image, then a loop embeds each.

    Same provider classes and boto3 client configuration as the pipeline, no gates; an image
    whose description or embedding raised is lost (the notebook printed the error and moved on).
    """
    from media_enrichment.aws import bedrock_runtime_client, make_session
    from media_enrichment.catalog import read_bytes
    from media_enrichment.errors import EnrichmentError
    from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, prepare_image
    from media_enrichment.providers.bedrock.describer import BedrockDescriber
    from media_enrichment.providers.bedrock.embedders import BedrockEmbedder

    settings = _settings(concurrency=threads)
    client = bedrock_runtime_client(make_session(profile=None, region=None), settings=settings)
    describer = BedrockDescriber(client, model_id=CLAUDE)
    embedder = BedrockEmbedder(client, model_id=TITAN, dim=settings.embedding_dim)

    def describe(path: str) -> Any:
        try:
            return describer.describe(prepare_image(read_bytes(path), CLAUDE_LIMITS))
        except EnrichmentError:
            return None

    started = time.perf_counter()
    with ThreadPool(threads) as pool:
        descriptions = pool.map(describe, paths)
    described = time.perf_counter() - started
    ok = 0
    for path, description in zip(paths, descriptions):
        try:
            embedder.embed_image(prepare_image(read_bytes(path), TITAN_LIMITS))
        except EnrichmentError:
            continue
        ok += description is not None
    seconds = time.perf_counter() - started
    return RunResult("notebook", len(paths), seconds, ok, len(paths) - ok, {"describe_phase_s": round(described, 3)})


def settle_garbage() -> None:
    """A full garbage collection, right before a timed part starts.

    Setting a side up (a botocore client loads its service model: tens of thousands of objects)
    leaves Python's collector a full pass due, which then lands in whichever timed part comes
    next: on the benchmark process's heap a full pass holds the interpreter lock for about
    150 ms, 5 % of a 600-image run on the zero-latency server, and it fell in about half the
    runs of either side. In a long run such passes are rare (one per ~10,000 images); here
    they were noise between paired runs. Each side collects before its clock starts.
    """
    gc.collect()


def run_bare(
    paths: Sequence[str], *, threads: int, client: str = "default", timed: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> RunResult:
    """The floor: the same two boto3 calls per image from ``threads`` threads, nothing else.

    Each image is read and prepared, and both request bodies are built and serialised, before
    the clock starts (the same bodies the pipeline's providers send); timed are only the two
    ``invoke_model`` calls per image and the decoding of their JSON answers: no gates, no
    preparation, no rows, no staging.

    Args:
        client: ``"default"``: the client a script writes, ``boto3.client("bedrock-runtime")``
            with a connection per thread (the floor); ``"pipeline"``: the pipeline's own client
            configuration (``aws.bedrock_client_config``), to tell the pipeline's own work from
            what its client configuration saves.
        timed: a context held around the timed part only (``benchmarks.instructions`` counts
            instructions within it).
    """
    import boto3
    from botocore.config import Config

    from media_enrichment.aws import bedrock_runtime_client, make_session
    from media_enrichment.catalog import read_bytes
    from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, prepare_images
    from media_enrichment.providers.bedrock.describer import BedrockDescriber
    from media_enrichment.providers.bedrock.embedders import BedrockEmbedder

    settings = _settings(concurrency=threads)
    if client == "default":
        runtime = boto3.Session().client("bedrock-runtime", config=Config(max_pool_connections=threads))
    elif client == "pipeline":
        runtime = bedrock_runtime_client(make_session(profile=None, region=None), settings=settings)
    else:
        raise ValueError(f"client must be 'default' or 'pipeline', got {client!r}")
    describer = BedrockDescriber(runtime, model_id=CLAUDE)
    embedder = BedrockEmbedder(runtime, model_id=TITAN, dim=settings.embedding_dim)
    bodies = []
    for path in paths:
        _, (for_claude, for_titan) = prepare_images(read_bytes(path), [CLAUDE_LIMITS, TITAN_LIMITS])
        claude = describer.request_body([describer.image_message(for_claude)])
        titan = embedder.image_body(for_titan)
        bodies.append((json.dumps(claude, separators=(",", ":")).encode(), json.dumps(titan, separators=(",", ":")).encode()))

    def one(pair: tuple[bytes, bytes]) -> bool:
        for model, body in zip((CLAUDE, TITAN), pair):
            answer = runtime.invoke_model(modelId=model, body=body, contentType="application/json", accept="application/json")
            json.loads(answer["body"].read())
        return True

    settle_garbage()
    with timed():
        began, started = time.monotonic(), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            ok = sum(pool.map(one, bodies))
        seconds = time.perf_counter() - started
    extra = {"threads": threads, "client": client}
    return RunResult("bare boto3", len(paths), seconds, ok, len(paths) - ok, extra, timed=(began, time.monotonic()))


def run_pipeline(
    manifest: Path,
    workdir: Path,
    *,
    merge: bool = False,
    on_enriched: Callable[[], None] | None = None,
    timed: Callable[[], AbstractContextManager[Any]] = nullcontext,
    **settings_values: Any,
) -> tuple[RunResult, Any, Any]:
    """This pipeline's path through the library's run driver, without Prefect: the flow's steps
    (``open_run`` -> catalogue -> plan -> ``run_chunk`` per chunk, ``chunks_in_flight`` at once
    -> optionally ``commit``, the streaming merge into Delta) on a thread pool of chunks.
    Settings not given keep their defaults, as a user who sets nothing gets them. ``timed`` is a
    context held around the plan and the chunks (not around opening the run or the merge).

    Returns:
        The result, and the describer's and embedder's gates.
    """
    from media_enrichment.pipeline.driver import open_run
    from media_enrichment.pipeline.submit import run_windowed

    settings = _settings(dataset=str(workdir / "dataset"), **settings_values)
    with open_run(settings, str(manifest), str(uuid.uuid4())) as run:
        settle_garbage()
        with timed():
            began, started = time.monotonic(), time.perf_counter()
            plan = run.plan(run.load_catalog())
            planned_s = time.perf_counter() - started
            total = plan.total
            chunks = run.chunks(plan)
            with ThreadPoolExecutor(max_workers=settings.chunks_in_flight) as pool:  # as the flow's chunk tasks
                staged = run_windowed(
                    chunks, submit=lambda items: pool.submit(run.run_chunk, items),
                    next_done=lambda futures: next(iter(wait(futures, return_when=FIRST_COMPLETED).done)),
                    result=lambda future: future.result(), window=settings.chunks_in_flight, budget=run.budget,
                )
            enriched_s = time.perf_counter() - started
        if on_enriched is not None:
            on_enriched()
        ok = sum(c.enriched for c in staged)
        failed = sum(c.failed for c in staged)
        extra: dict[str, Any] = {
            "chunks": len(chunks), "failed_rows": failed, "plan_s": round(planned_s, 3), "enrich_s": round(enriched_s, 3),
        }
        if merge:  # as the flow's merge-results task does: commits of at most commit_rows rows
            run.commit(staged, plan)
            extra["merge_s"] = round(time.perf_counter() - started - enriched_s, 3)
        seconds = time.perf_counter() - started
        timed = (began, time.monotonic())
        gates = run.services.describer.gate, run.services.embedder.gate
    return RunResult("pipeline", total, seconds, ok, total - ok, extra, timed=timed), *gates


def run_flow(manifest: Path, workdir: Path, **settings_values: Any) -> RunResult:
    """The real ``media_enrichment_prefect.flows.enrich.enrich_catalog`` flow (Prefect's temporary
    server, Delta merge), run as a user runs it: the provider and the dataset given, every other
    setting from ``MEDIA_ENRICH_*`` variables (``settings_values``) or its default.

    The wall-clock reported is the flow's own ``duration_s`` (plan, access checks, chunk tasks,
    merge, report); starting the temporary Prefect server is kept out of it.
    """
    for key, value in settings_values.items():
        os.environ[f"MEDIA_ENRICH_{key.upper()}"] = str(value)
    from media_enrichment_prefect.flows.enrich import enrich_catalog

    started = time.perf_counter()
    try:
        summary = enrich_catalog(str(manifest), dataset=str(workdir / "dataset"), provider="bedrock", embedding_dim=1024)
    finally:
        for key in settings_values:
            os.environ.pop(f"MEDIA_ENRICH_{key.upper()}", None)
    wall = time.perf_counter() - started
    total = int(summary["catalog_rows"])
    ok = int(summary["enriched"])
    extra = {
        "driver": "flow",
        "chunks": summary.get("chunks"),
        "failed_rows": summary.get("failed"),
        "call_wall_s": round(wall, 3),
        "access_checks": 2,
        "rate_control": summary.get("rate_control"),
        "settings": {k: summary["settings"].get(k) for k in ("chunk_size", "concurrency", "chunk_tasks", *settings_values)},
    }
    return RunResult("pipeline", total, float(summary["duration_s"]), ok, total - ok, extra)
