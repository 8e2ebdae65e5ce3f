"""One catalogue through the pipeline in a fresh process; prints its peak RSS as JSON.

Run by ``benchmarks.run`` (comparison 4) once per catalogue size, so each size starts from a
clean interpreter and ``ru_maxrss`` (the process's peak resident set) belongs to that size alone.

    python -m benchmarks.memory_probe --manifest M --endpoint URL --workdir DIR [--merge]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, in MiB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: Linux carries ``ru_maxrss`` over
    ``fork`` + ``exec``, so a child of a large parent reports the parent's peak until it exceeds
    it; ``VmHWM`` belongs to this process image alone. Elsewhere ``ru_maxrss`` (KiB on Linux).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--merge", action="store_true", help="also run the streaming merge into Delta")
    args = parser.parse_args(argv)

    import media_enrichment  # first: it sets delta-rs's allocator options (see its docstring)
    from benchmarks.harness import run_pipeline, use_endpoint

    use_endpoint(args.endpoint)
    # Everything the run will import, imported before the baseline is read.
    import boto3  # noqa: F401
    import deltalake  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import media_enrichment.dataset  # noqa: F401
    import media_enrichment.pipeline.driver  # noqa: F401
    import media_enrichment.providers.bedrock  # noqa: F401

    baseline = peak_rss_mb()
    marks: dict[str, float] = {}
    started = time.perf_counter()
    result, describer_gate, embedder_gate = run_pipeline(
        args.manifest,
        args.workdir,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        merge=args.merge,
        on_enriched=lambda: marks.setdefault("enriched_peak_mb", peak_rss_mb()),
    )
    out = {
        **result.as_dict(),
        "baseline_mb": round(baseline, 1),
        "enriched_peak_mb": round(marks.get("enriched_peak_mb", 0.0), 1),
        "peak_mb": round(peak_rss_mb(), 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "wall_s": round(time.perf_counter() - started, 2),
        "concurrency": args.concurrency,
        "chunk_size": args.chunk_size,
        "merge": args.merge,
        "jemalloc_conf": os.environ.get(media_enrichment.JEMALLOC_CONF_VAR),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
