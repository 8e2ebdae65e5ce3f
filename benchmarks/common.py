"""What the benchmark runner and its comparison modules share: the targets each comparison must
show (the issue's), and the run's progress log."""

from __future__ import annotations

import sys
import time

__all__ = ["TARGETS", "log"]

TARGETS = {
    "quota_share": 0.90,  # of the rpm the user set, first Claude call to last
    "default_speedup": 3.0,  # against the notebook, nothing set
    "floor_ratio": 0.8,  # images/s per process against the bare-boto3 floor
    "lost": 0,
    "prepare_speedup": 3.0,
    "memory_ratio": 1.2,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
