"""Where the pipeline's images/s goes, against the floor: the floor comparison (3) in layers.

Each layer adds one part of the pipeline's per-image work to the one before, on the same
zero-latency server, catalogue and 16 threads, so the drop from one row to the next is that
part's cost in one busy process (GIL hand-offs included, which timing a part alone hides):

1. ``bare``: ``harness.run_bare``, the floor (default boto3 client);
2. ``providers``: the run's own describer and embedder (``describe`` and ``embed_image``:
   request bodies, call windows, answer and vector checks) on images prepared before the clock;
3. ``+ prepare``: ``prepare_images`` in the thread, from bytes read before the clock;
4. ``+ read``: the run's reader (confinement checks, bounded read) in the thread;
5. ``pipeline``: ``harness.run_pipeline``, the whole driver (plan, slots, rows, staging).

    python -m benchmarks.floor_layers [--images 600] [--reps 2]

A diagnostic, not a target: it prints images/s per layer and rep, and each layer's best
against the best bare loop.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import ServerProcess, _settings, make_catalog, manifest_paths, run_bare, run_pipeline, use_endpoint
from benchmarks.run import BARE_THREADS, ZERO_LATENCY

THREADS = BARE_THREADS[-1]  # the floor's thread count


def run_layer(manifest: Path, blobs: dict[str, bytes], workdir: Path, *, prepare: bool, read: bool) -> float:
    """Images/s of the run's providers from ``THREADS`` threads, with preparation and reading
    in the thread or done before the clock (``blobs``: each image's bytes, by path)."""
    from media_enrichment.images import prepare_images
    from media_enrichment.pipeline.driver import open_run

    paths = list(blobs)
    settings = _settings(dataset=str(workdir / f"layer-{uuid.uuid4().hex}"))
    with open_run(settings, str(manifest), str(uuid.uuid4())) as run:
        describer, embedder = run.services.describer, run.services.embedder
        limits = [describer.image_limits, embedder.image_limits]
        reader = run.services.read
        ready = {path: prepare_images(blobs[path], limits)[1] for path in paths}

        def one(path: str) -> bool:
            data = reader(path) if read else blobs[path]
            # The plan's hash is passed, as the enrichment does: no second hash in the thread.
            for_describer, for_embedder = (
                prepare_images(data, limits, content_sha256="0" * 64)[1] if prepare else ready[path]
            )
            describer.describe(for_describer)
            embedder.embed_image(for_embedder)
            return True

        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            done = sum(pool.map(one, paths))
        return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    from media_enrichment.catalog import read_bytes

    workdir = Path(tempfile.mkdtemp(prefix="floor-layers-"))
    try:
        manifest = make_catalog(workdir / "catalog", args.images, size=256)
        paths = manifest_paths(manifest)
        blobs = {path: read_bytes(path) for path in paths}

        def pipeline() -> float:
            shutil.rmtree(workdir / "floor", ignore_errors=True)
            result, _, _ = run_pipeline(manifest, workdir / "floor")
            return result.images / result.seconds

        def bare() -> float:
            result = run_bare(paths, threads=THREADS)
            return result.images / result.seconds

        layers: dict[str, Callable[[], float]] = {
            "bare": bare,
            "providers": lambda: run_layer(manifest, blobs, workdir, prepare=False, read=False),
            "+ prepare": lambda: run_layer(manifest, blobs, workdir, prepare=True, read=False),
            "+ read": lambda: run_layer(manifest, blobs, workdir, prepare=True, read=True),
            "pipeline": pipeline,
        }
        rates: dict[str, list[float]] = {name: [] for name in layers}
        with ServerProcess(**ZERO_LATENCY) as server:
            use_endpoint(server.endpoint)
            bare()  # warm up the client path and the server
            server.reset()
            for _ in range(args.reps):  # alternate, so a drift of the machine touches every layer
                for name, measure in layers.items():
                    rates[name].append(measure())
                    server.reset()
        floor = max(rates["bare"])
        print(f"{'layer':12s} {'images/s per rep':24s} best / bare")
        for name, values in rates.items():
            print(f"{name:12s} {' '.join(f'{v:6.1f}' for v in values):24s} {max(values) / floor:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
