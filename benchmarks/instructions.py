"""The floor comparison (3) counted in instructions, which a busy or shared machine does not move.

On a 2-core VM whose speed drifts within a run, images/s and CPU time per image move by 10-30 %
from one run to the next (``benchmarks/README.md``). Valgrind's callgrind counts the
instructions the client process executes instead: the same for the same code and inputs,
whatever else the machine does. Each side runs in its own process under callgrind against the
zero-latency server, once unmeasured (imports, caches, connections) and once measured, with
instrumentation switched on for the timed part only (``callgrind_control``):

1. ``bare``: ``harness.run_bare`` on a default client, 16 threads (request bodies built before);
2. ``pipeline``: ``harness.run_pipeline``, the run driver with defaults (plan, reading,
   preparation, both calls, rows, staging).

    python -m benchmarks.instructions [--images 300]

It prints instructions per image of each, their ratio (bare / pipeline, the floor's direction),
the same without OpenSSL's SHA-256 (valgrind hides the CPU's SHA extensions, so its SHA-256 runs
a generic path that costs about ten times what it does natively), and the functions whose
instructions per image differ most. Instructions are not time: system calls, thread hand-offs
and cache misses cost time and no user-space instructions. A diagnostic, not a target. Needs
valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KINDS = ("bare", "pipeline")
THREADS = 16  # the floor's thread count (benchmarks.run.BARE_THREADS[-1])
_LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$")


@contextmanager
def _instrumented() -> Iterator[None]:
    """Callgrind's instrumentation on for the block (this process runs under callgrind)."""
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


def child(kind: str, endpoint: str, manifest: Path, workdir: Path) -> None:
    """One side, in a process under callgrind: a run unmeasured, then one measured."""
    from benchmarks.harness import manifest_paths, run_bare, run_pipeline, use_endpoint

    use_endpoint(endpoint)
    if kind == "bare":
        paths = manifest_paths(manifest)
        run_bare(paths[:32], threads=THREADS)
        run_bare(paths, threads=THREADS, timed=_instrumented)
    else:
        run_pipeline(manifest, workdir / "warm")
        run_pipeline(manifest, workdir / "measured", timed=_instrumented)


def count(out_file: Path) -> tuple[int, Counter[str]]:
    """Total instructions of a callgrind file and each function's own (``callgrind_annotate``)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", str(out_file)], check=True, capture_output=True,
        text=True,
    ).stdout
    total, functions = 0, Counter[str]()
    for line in text.splitlines():
        if line.rstrip().endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
            continue
        match = _LINE.match(line)
        if match:
            where, lib = match.group(2).strip(), ""
            if where.endswith("]") and " [" in where:
                where, lib = where[:-1].rsplit(" [", 1)
            function = where.rsplit(":", 1)[-1]
            functions[f"{function} ({Path(lib).name})" if lib else function] += int(match.group(1).replace(",", ""))
    return total, functions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.endpoint, args.manifest, args.workdir)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("benchmarks.instructions needs valgrind: apt-get install valgrind")

    from benchmarks.harness import ServerProcess, make_catalog
    from benchmarks.run import ZERO_LATENCY

    workdir = Path(tempfile.mkdtemp(prefix="instructions-"))
    try:
        manifest = make_catalog(workdir / "catalog", args.images, size=256)
        counts: dict[str, tuple[int, Counter[str]]] = {}
        with ServerProcess(**ZERO_LATENCY) as server:
            for kind in KINDS:
                out = workdir / f"callgrind.{kind}"
                subprocess.run(
                    [
                        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                        sys.executable, "-m", "benchmarks.instructions", "--child", kind, "--endpoint", server.endpoint,
                        "--manifest", str(manifest), "--workdir", str(workdir / kind),
                    ],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                counts[kind] = count(out)
                server.reset()
        n = args.images
        per_image = {kind: total / n for kind, (total, _) in counts.items()}
        # Without OpenSSL's own instructions: its SHA-256, which valgrind runs on a generic path.
        rest = {
            kind: per_image[kind] - sum(v for k, v in functions.items() if "libcrypto" in k) / n
            for kind, (_, functions) in counts.items()
        }
        print(f"instructions per image, {n} images, {THREADS} threads for the bare loop:")
        for kind in KINDS:
            print(f"  {kind:9s} {per_image[kind] / 1e6:6.2f} M   without OpenSSL (SHA-256) {rest[kind] / 1e6:6.2f} M")
        ratio = per_image["bare"] / per_image["pipeline"]
        print(f"  bare / pipeline: {ratio:.3f}; without OpenSSL: {rest['bare'] / rest['pipeline']:.3f}")
        bare_functions, pipeline_functions = counts["bare"][1], counts["pipeline"][1]
        extra = {k: (pipeline_functions[k] - bare_functions[k]) / n for k in pipeline_functions | bare_functions}
        print("functions whose own instructions per image differ most (pipeline - bare, thousands):")
        for name, diff in sorted(extra.items(), key=lambda kv: -abs(kv[1]))[:15]:
            print(f"  {diff / 1e3:+8.1f} k  {name[:110]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
