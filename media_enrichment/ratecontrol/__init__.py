"""Rate control for model calls: how fast they go, and how many are in flight.

Thread-safe, and no Prefect import (the flow injects limiters of its own through
``build_gates(settings, limiters=...)``).

Where each piece is:

- ``ratecontrol.buckets``: the ``Limiter`` protocol (a blocking ``acquire(amount)``) and
  ``TokenBucket``, the local limiter for requests and tokens per minute.
- ``ratecontrol.window``: ``CallWindow``, each model's window of calls in flight (Little's law
  from measured latency, AIMD back-off on throttling, a cap).
- ``ratecontrol.gate``: ``ModelGate``, what one model's calls pass through (slot, request,
  tokens), and ``build_gates``, which makes the describer's and embedder's gates from settings.
- ``media_enrichment_prefect.tasks.limits``: ``PrefectRateLimiter``, a ``Limiter`` backed by a
  Prefect global concurrency limit (shared by every run and worker; kept out of the library,
  which imports no Prefect), and ``ensure_rate_limits``, which makes those limits.
- ``media_enrichment.providers.bedrock.hooks``: the botocore hook that reports every HTTP
  attempt (botocore retries inside one call) to the gate of the call in flight.
- ``media_enrichment.tokens``: the token estimate each Claude call takes from its budget.
- ``media_enrichment.config``: the settings (``describer_rpm``, ``describer_tpm``,
  ``embedder_rpm``, ``adaptive_concurrency``, ``shared_rate_limits``, ``concurrency``).
- ``media_enrichment.aws``: botocore's own retry mode and attempts, and ``pool_size``, the
  client's connection pool sized to the concurrency.
"""

from __future__ import annotations

from media_enrichment.ratecontrol.window import THROTTLE_TOLERANCE, THROTTLE_WINDOW, CallWindow
from media_enrichment.ratecontrol.buckets import Limiter, TokenBucket
from media_enrichment.ratecontrol.gate import LIMIT_NAMES, ModelGate, build_gates, calls_in_flight

__all__ = [
    "LIMIT_NAMES",
    "THROTTLE_TOLERANCE",
    "THROTTLE_WINDOW",
    "CallWindow",
    "Limiter",
    "ModelGate",
    "TokenBucket",
    "build_gates",
    "calls_in_flight",
]
