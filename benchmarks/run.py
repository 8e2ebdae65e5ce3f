"""Throughput as a user runs the pipeline, against the notebook's method and a bare-boto3 floor.

    .venv/bin/python -m benchmarks.run            # full run, ~20 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick    # smaller sizes, ~4 minutes

Prints a table and writes ``benchmarks/results.json``. Every comparison is measured side by
side in one run, against the project's Bedrock-compatible server started in a separate process
(``python -m media_enrichment.testing.bedrock_server``). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import TARGETS, log
from benchmarks.prepare import compare_prepare
from benchmarks.report import table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "images": 600,  # quota, defaults and floor comparisons
    "dask_images": 2000,  # long enough for two worker processes' start to be a small part
    "small_images": 200,  # the smallest catalogue the quota target holds for
    "throttle_images": 1000,
    "notebook_throttle_images": 300,  # the notebook's run under throttling (its loss rate per image)
    "jpegs": 4,  # 12 MP JPEGs, each prepared `rounds` times by each method
    "rounds": 5,
    "memory_sizes": (2000, 20000),
    "memory_repeats": 2,  # each size runs this many times, alternating; the median peak counts
}
QUICK = {
    "images": 200,
    "dask_images": 400,
    "small_images": 200,
    "throttle_images": 200,
    "notebook_throttle_images": 50,
    "jpegs": 2,
    "rounds": 3,
    "memory_sizes": (300, 3000),
    "memory_repeats": 1,
}
LATENCY = {"claude-latency": 0.5, "titan-latency": 0.05, "latency-jitter": 0.1, "seed": 1}
#: The account's quota on the server (requests per minute per model), enforced over a sliding
#: 20 s window: a run of ~25 s meets it at its rate, and a client at 95 % of the rate with one
#: second of burst stays within it (burst + 0.95 * rate * W <= rate * W for W >= 20 s).
QUOTA = 1500
QUOTA_SERVER = {**LATENCY, "rpm-quota": QUOTA, "quota-window": 20}
#: What the user sets, and nothing else: 95 % of the quota (and a token quota that does not bind).
USER_QUOTA = {"describer_rpm": math.floor(QUOTA * 0.95), "embedder_rpm": math.floor(QUOTA * 0.95), "describer_tpm": 2_000_000}
#: "Nothing set": the account's quota is far above what the default window cap can reach
#: (32 calls in flight per model at 0.5 s: at most 64 Claude calls a second, 3,840 a minute).
FAR_SERVER = {**LATENCY, "rpm-quota": 6000, "quota-window": 20}
ZERO_LATENCY = {"log-size": 100_000}
BARE_THREADS = (8, 16)
THROTTLE_RATE = 0.05


# ---------------------------------------------------------------------------------------------
# 1-4: the quota, nothing set, the floor, Dask; 5: throttling
# ---------------------------------------------------------------------------------------------


def _measured(server: Any, result: Any, *, quota: int | None) -> dict[str, Any]:
    from benchmarks.harness import server_summary

    summary = server_summary(server.counters(log=True), quota=quota, images=result.images)
    summary["extra_calls"] -= int(result.extra.get("access_checks", 0))
    server.reset()
    return {**result.as_dict(), "server": summary}


def _notebook(server: Any, paths: list[str], *, quota: int | None) -> dict[str, Any]:
    from benchmarks.harness import run_notebook

    log(f"notebook method on {len(paths)} images (ThreadPool(5) describe, then sequential embed)")
    out = _measured(server, run_notebook(paths), quota=quota)
    time.sleep(1)
    return out


def _flow(server: Any, manifest: Path, workdir: Path, *, quota: int | None, **settings: Any) -> dict[str, Any]:
    from benchmarks.harness import run_flow

    shutil.rmtree(workdir, ignore_errors=True)
    set_ = ", ".join(f"MEDIA_ENRICH_{k.upper()}={v}" for k, v in settings.items()) or "nothing set"
    log(f"pipeline (the enrich-catalog flow) on {manifest.parent.name}, {set_}")
    out = _measured(server, run_flow(manifest, workdir, **settings), quota=quota)
    time.sleep(1)
    return out


def compare_quota(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """1. Only the quota set: the share of it the pipeline sustains, first call to last."""
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, use_endpoint

    out: dict[str, Any] = {"server": QUOTA_SERVER, "user_settings": USER_QUOTA, "runs": {}}
    rpm = USER_QUOTA["describer_rpm"]
    with ServerProcess(**QUOTA_SERVER) as server:
        use_endpoint(server.endpoint)
        for n in sorted({cfg["images"], cfg["small_images"]}, reverse=True):
            manifest = make_catalog(workdir / f"catalog-{n}", n, size=256)
            run: dict[str, Any] = {"images": n}
            if n == cfg["images"]:
                run["notebook"] = _notebook(server, manifest_paths(manifest), quota=QUOTA)
            run["pipeline"] = _flow(server, manifest, workdir / f"quota-{n}", quota=QUOTA, **USER_QUOTA)
            pipe = run["pipeline"]["server"]
            run["whole_run_share"] = round(pipe["claude_whole_rpm"] / rpm, 4) if pipe["claude_whole_rpm"] else None
            run["steady_share"] = round(pipe["claude_steady_rpm"] / rpm, 4) if pipe["claude_steady_rpm"] else None
            if "notebook" in run:
                run["speedup"] = round(run["notebook"]["seconds"] / run["pipeline"]["seconds"], 2)
            out["runs"][str(n)] = run
    return out


def compare_defaults(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """2. Nothing set, the quota far away: the pipeline against the notebook on the same server."""
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, use_endpoint

    n = cfg["images"]
    manifest = make_catalog(workdir / f"catalog-{n}", n, size=256)
    out: dict[str, Any] = {"images": n, "server": FAR_SERVER}
    with ServerProcess(**FAR_SERVER) as server:
        use_endpoint(server.endpoint)
        out["notebook"] = _notebook(server, manifest_paths(manifest), quota=FAR_SERVER["rpm-quota"])
        out["pipeline"] = _flow(server, manifest, workdir / "defaults", quota=FAR_SERVER["rpm-quota"])
    out["speedup"] = round(out["notebook"]["seconds"] / out["pipeline"]["seconds"], 2)
    out["quota_429"] = {
        name: out[name]["server"]["claude_quota_429"] + out[name]["server"]["titan_quota_429"] for name in ("notebook", "pipeline")
    }
    return out


def _paired(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> list[float]:
    """Ratios of two sides' runs round by round (a round where either side has no value left out)."""
    return [n / d for n, d in zip(numerators, denominators) if n and d]


#: Rounds of comparison 3. Each runs every side once, in an order that rotates from one round to
#: the next, and each pipeline run is compared with the floor's run of its own round. The floor
#: run twice in a round differed by up to a quarter (0.73 to 1.23), so the median needs eight.
FLOOR_ROUNDS = 8


def compare_floor(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """3. CPU per image: the pipeline's images/s per process on a zero-latency server against a
    bare loop making the same two boto3 calls per image from threads.

    On a machine whose speed drifts by 10-30 % within minutes, a ratio of two runs minutes apart
    measures the drift, and the best of four floor runs (two thread counts, two rounds each)
    against the best of two pipeline runs favours the side with more draws. So each round runs
    every side once, back to back, in a rotating order; the floor is the thread count with the
    higher median; the ratio is the median over the rounds of each round's pipeline against that
    round's floor run (images/s, and the client process's CPU per image the other way round).
    """
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, run_bare, run_pipeline, use_endpoint

    n = cfg["images"]
    manifest = make_catalog(workdir / f"catalog-{n}", n, size=256)
    paths = manifest_paths(manifest)
    out: dict[str, Any] = {
        "images": n, "server": ZERO_LATENCY, "rounds": FLOOR_ROUNDS, "bare": {}, "bare_again": [], "bare_pipeline_client": [],
        "pipeline": [], "cores": {}, "cpu_ms_per_image": {},
    }

    def busy(name: str, result: Any) -> None:
        # The cores each process kept busy while the clock ran. images/s measures the client's
        # CPU only while the client process, not the test server, is the limit; the client
        # process's CPU per image (its busy cores / images per second) holds either way.
        cores = sampler.cores(*result.timed)
        out["cores"].setdefault(name, []).append(cores)
        cpu_ms = 1000 * cores["flow process"] * result.seconds / result.images if cores else None
        out["cpu_ms_per_image"].setdefault(name, []).append(round(cpu_ms, 2) if cpu_ms else None)

    def bare_side(name: str, runs: list[float], *, threads: int, client: str = "default") -> Callable[[int], None]:
        """A bare loop's side: its images/s to ``runs``, its busy cores and CPU under ``name``."""

        def side(rep: int) -> None:
            log(f"3. bare boto3 loop ({name}, {client} client), {threads} threads, {n} images (round {rep + 1}/{FLOOR_ROUNDS})")
            result = run_bare(paths, threads=threads, client=client)
            runs.append(round(result.images / result.seconds, 1))
            busy(name, result)

        return side

    def pipeline(rep: int) -> None:
        log(f"3. pipeline through the run driver, defaults, {n} images (round {rep + 1}/{FLOOR_ROUNDS})")
        shutil.rmtree(workdir / "floor", ignore_errors=True)
        result, describer, embedder = run_pipeline(manifest, workdir / "floor")
        busy("pipeline", result)
        out["pipeline"].append(
            {
                "images_per_s": round(result.images / result.seconds, 1), **result.as_dict(),
                "describer_gate": describer.stats(), "embedder_gate": embedder.stats(),
            }
        )

    same = BARE_THREADS[-1]
    sides = [
        *(bare_side(f"bare {t}", out["bare"].setdefault(str(t), []), threads=t) for t in BARE_THREADS),
        # The floor once more: the floor against itself is what this machine's drift alone makes
        # of a paired ratio (the resolution of the others).
        bare_side("bare again", out["bare_again"], threads=same),
        # The same loop on the pipeline's client configuration (its User-Agent built once): the
        # pipeline against it is the cost of the pipeline's own work alone.
        bare_side("bare pipeline client", out["bare_pipeline_client"], threads=same, client="pipeline"),
        pipeline,
    ]
    with ServerProcess(**ZERO_LATENCY) as server, CoreSampler(server.proc.pid) as sampler:
        use_endpoint(server.endpoint)
        run_bare(paths, threads=same)  # the server decodes each image once: neither side pays for that
        server.reset()
        for rep in range(FLOOR_ROUNDS):
            for k in range(len(sides)):
                sides[(rep + k) % len(sides)](rep)
                server.reset()
    floor = max(BARE_THREADS, key=lambda t: statistics.median(out["bare"][str(t)]))
    pipeline_runs = [r["images_per_s"] for r in out["pipeline"]]
    ratios = _paired(pipeline_runs, out["bare"][str(floor)])
    out["floor_threads"] = floor
    out["floor_images_per_s"] = statistics.median(out["bare"][str(floor)])
    out["pipeline_images_per_s"] = statistics.median(pipeline_runs)
    out["ratios"] = [round(r, 3) for r in ratios]
    out["ratio"] = round(statistics.median(ratios), 3)
    out["ratio_same_client"] = round(statistics.median(_paired(pipeline_runs, out["bare_pipeline_client"])), 3)
    cpu = out["cpu_ms_per_image"]
    noise = _paired(out["bare_again"], out["bare"][str(same)])
    noise_cpu = _paired(cpu.get(f"bare {same}", []), cpu.get("bare again", []))
    if noise:
        out["noise"] = {
            "threads": same, "ratios": [round(r, 3) for r in noise], "ratio": round(statistics.median(noise), 3),
            "cpu_ratios": [round(r, 3) for r in noise_cpu],
            "cpu_ratio": round(statistics.median(noise_cpu), 3) if noise_cpu else None,
        }
    floor_cpu, pipeline_cpu = cpu.get(f"bare {floor}", []), cpu.get("pipeline", [])
    cpu_ratios = _paired(floor_cpu, pipeline_cpu)  # the client's CPU per image, floor's / pipeline's
    if cpu_ratios:
        out["cpu_ms"] = {
            "threads": floor, "floor": statistics.median(filter(None, floor_cpu)),
            "pipeline": statistics.median(filter(None, pipeline_cpu)),
        }
        out["cpu_ratios"] = [round(r, 3) for r in cpu_ratios]
        out["cpu_ratio"] = round(statistics.median(cpu_ratios), 3)
    return out


def compare_dask(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """4. The flow on Dask with 2 worker processes against the flow in one process (zero latency)."""
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, run_bare, use_endpoint

    n = cfg["dask_images"]
    manifest = make_catalog(workdir / f"catalog-{n}", n, size=256)
    out: dict[str, Any] = {"images": n, "server": ZERO_LATENCY}
    with ServerProcess(**ZERO_LATENCY) as server:
        use_endpoint(server.endpoint)
        # The server decodes each image the first time it sees it (about 2.4 ms of its CPU an
        # image, then cached): one bare pass first, so that neither run pays for that.
        run_bare(manifest_paths(manifest), threads=BARE_THREADS[-1])
        server.reset()
        server_epoch = time.monotonic() - server.counters()["now"]  # the server's clock, here
        for name, extra in (("threads", {}), ("dask", {"task_runner": "dask", "dask_workers": 2})):
            machine, served = _busy_cores(), _process_cpu_s(server.proc.pid)
            started = time.perf_counter()
            with CoreSampler(server.proc.pid) as sampler:
                out[name] = _flow(server, manifest, workdir / name, quota=None, **extra)
            wall = time.perf_counter() - started
            # Where the 2 cores went: the whole machine's busy share, and the server's own part.
            out[name]["machine_busy_cores"] = round((_busy_cores() - machine) / wall, 2)
            out[name]["server_cores"] = round((_process_cpu_s(server.proc.pid) - served) / wall, 2)
            span = out[name]["server"].get("claude_span_at")
            if span:  # and while the chunks ran (first Claude call to last), by process
                out[name]["cores_while_calls"] = sampler.cores(server_epoch + span[0], server_epoch + span[1])
    for name in ("threads", "dask"):
        out[name]["images_per_s"] = round(n / out[name]["seconds"], 1)
        # While the chunks run (first Claude call to last): without starting the cluster, the
        # plan, the access checks and the merge, which one process does either way.
        whole = out[name]["server"]["claude_whole_rpm"]
        out[name]["calls_images_per_s"] = round(whole / 60, 1) if whole else None
    out["ratio"] = round(out["dask"]["images_per_s"] / out["threads"]["images_per_s"], 3)
    calls = (out["threads"]["calls_images_per_s"], out["dask"]["calls_images_per_s"])
    out["calls_ratio"] = round(calls[1] / calls[0], 3) if all(calls) else None
    return out


class CoreSampler:
    """Samples, every ``interval_s``, the CPU seconds of the machine and of the processes of a
    run: the test server, this process (the flow, and in one process its chunks), the Dask
    worker processes and the Prefect server (its children); ``cores(t0, t1)`` is each one's
    busy cores between two ``time.monotonic()`` instants."""

    def __init__(self, server_pid: int, *, interval_s: float = 0.25):
        self.server_pid, self.interval_s = server_pid, interval_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core-sampler", daemon=True)

    def __enter__(self) -> CoreSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._snapshot()))
            self._stop.wait(self.interval_s)

    def _snapshot(self) -> dict[str, float]:
        out = {"machine": _busy_cores(), "server": 0.0, "flow process": 0.0, "dask workers": 0.0, "prefect server": 0.0}
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                cpu = _process_cpu_s(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            pid = int(entry.name)
            if pid == self.server_pid:
                out["server"] += cpu
            elif pid == me:
                out["flow process"] += cpu
            elif b"uvicorn" in cmdline:
                out["prefect server"] += cpu
            elif b"multiprocessing" in cmdline or b"spawn_main" in cmdline:
                out["dask workers"] += cpu
        return out

    def cores(self, t0: float, t1: float) -> dict[str, float] | None:
        inside = [(t, s) for t, s in self.samples if t0 <= t <= t1]
        if len(inside) < 2:
            return None
        (ta, a), (tb, b) = inside[0], inside[-1]
        return {key: round((b[key] - a[key]) / (tb - ta), 2) for key in a}


def _busy_cores() -> float:
    """CPU seconds the whole machine has been busy (all cores, from ``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/<pid>/stat``)."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def compare_throttling(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """5. The pipeline with only the quota set, 5 % of requests throttled on top of the quota."""
    from benchmarks.harness import ServerProcess, make_catalog, manifest_paths, use_endpoint

    n = cfg["throttle_images"]
    manifest = make_catalog(workdir / f"catalog-{n}", n, size=256)
    flags = {**QUOTA_SERVER, "throttle-rate": THROTTLE_RATE, "seed": 2}
    out: dict[str, Any] = {"images": n, "throttle_rate": THROTTLE_RATE, "server": flags}
    with ServerProcess(**flags) as server:
        use_endpoint(server.endpoint)
        out["pipeline"] = _flow(server, manifest, workdir / "throttled", quota=QUOTA, **USER_QUOTA)
        k = cfg["notebook_throttle_images"]
        out["notebook"] = _notebook(server, manifest_paths(manifest)[:k], quota=QUOTA)
    pipe = out["pipeline"]
    out["lost"] = pipe["lost"]
    out["extra_calls"] = pipe["server"]["extra_calls"]
    rpm = pipe["server"]["claude_whole_rpm"]
    out["whole_run_share"] = round(rpm / USER_QUOTA["describer_rpm"], 4) if rpm else None
    return out




# ---------------------------------------------------------------------------------------------
# 7: peak memory against catalogue size
# ---------------------------------------------------------------------------------------------


def compare_memory(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from benchmarks.harness import ServerProcess, make_catalog

    small, big = cfg["memory_sizes"]
    repeats = cfg["memory_repeats"]
    log(f"7. writing {big} small PNGs")
    manifest = make_catalog(workdir / "catalog-64", big, size=64, seed=9)
    lines = manifest.read_text().splitlines(keepends=True)
    small_manifest = manifest.with_name("catalog-small.csv")
    small_manifest.write_text("".join(lines[: small + 1]))
    runs: dict[str, list[dict[str, Any]]] = {str(small): [], str(big): []}
    with ServerProcess(**{"log-size": 100}) as server:  # no latency, no quota
        for rep in range(repeats):  # sizes alternate, so a drift of the machine touches both
            for size, path in ((small, small_manifest), (big, manifest)):
                log(f"7. {size} images through the pipeline in a fresh process ({rep + 1}/{repeats})")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throughput benchmarks (see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~4 minutes)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="comparisons to run, e.g. 1,3")
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
    # A new Prefect home migrates its database first (~22 s on 2 cores), beyond Prefect's 20 s wait.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
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
        "config": {**cfg, "quota_server": QUOTA_SERVER, "user_quota": USER_QUOTA, "far_server": FAR_SERVER},
        "targets": TARGETS,
        "comparisons": {},
    }
    started = time.perf_counter()
    try:
        steps = (  # the CPU-bound comparisons first, while the machine is freshest
            ("3", "floor", lambda: compare_floor(cfg, workdir)),
            ("4", "dask", lambda: compare_dask(cfg, workdir)),
            ("1", "quota", lambda: compare_quota(cfg, workdir)),
            ("2", "defaults", lambda: compare_defaults(cfg, workdir)),
            ("5", "throttling", lambda: compare_throttling(cfg, workdir)),
            ("6", "prepare", lambda: compare_prepare(cfg)),
            ("7", "memory", lambda: compare_memory(cfg, workdir)),
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
