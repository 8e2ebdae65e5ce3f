"""A Bedrock-runtime-compatible HTTP server on loopback, for tests and benchmarks.

It speaks ``InvokeModel`` (``POST /model/{modelId}/invoke``) for Claude (``claude``), Titan
Multimodal Embeddings G1 (``titan``) and Nova Multimodal Embeddings (``nova``), and the control
plane's ``GetFoundationModel`` (``GET /foundation-models/{id}``, ``control_plane``). It sends
errors the way Bedrock does, so botocore parses them (JSON ``{"message": ...}`` plus an
``x-amzn-ErrorType`` header, see ``errors``), and refuses what the service refuses: unknown
models (404), denied ones (403), retired Claude versions (404, end of life) and Claude 4.x base
ids called without an inference profile (400). Answers are deterministic from the image bytes
(``content``); faults, latency and a quota come from a seeded ``FaultPlan`` and ``Counters``
record every request (``faults``). Batch inference jobs (``CreateModelInvocationJob`` and
its siblings, on the control plane; input and output on S3) are ``BedrockServer.batch``
(``batch.BatchJobs``). Point the real boto3 client at it with
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=server.endpoint_url`` (see ``BedrockServer.env``).

    with BedrockServer(faults=FaultPlan(throttle_rate=0.2, seed=1)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        ...
        assert max(server.counters.images.values()) <= 3          # requests per image
        assert max(server.counters.billed_images.values()) == 1   # answers per (model, image)

The server binds loopback only, stops itself after ``max_lifetime`` seconds, bounds request
bodies, and its sleeps (latency, stalls) end as soon as it stops. Run it standalone with
``python -m media_enrichment.testing.bedrock_server --port 8777`` (``--help`` lists latency,
fault and quota flags); a process driving it from outside reads its counters from
``GET /_test/counters`` and clears them with ``POST /_test/reset``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from media_enrichment.testing.batch import BatchJobs, BatchPlan
from media_enrichment.testing.claude import END_OF_LIFE_MESSAGE, RETIRED_MODELS, handle_claude, require_profile
from media_enrichment.testing.content import FactsCache
from media_enrichment.testing.control_plane import ControlPlaneHandler, foundation_model, lifecycle_fields
from media_enrichment.testing.errors import ServiceError, access_denied, json_object, unknown_operation
from media_enrichment.testing.faults import Counters, FaultPlan, Quota, RequestRecord
from media_enrichment.testing.models import KNOWN_MODELS, base_model, family
from media_enrichment.testing.nova import handle_nova
from media_enrichment.testing.titan import handle_titan
from media_enrichment.testing.wire import COUNTERS_PATH, RESET_PATH, HTTPServer

logger = logging.getLogger(__name__)

__all__ = ["BedrockServer", "main"]

_HANDLERS = {"anthropic": handle_claude, "titan": handle_titan, "nova": handle_nova}


class BedrockServer:
    """A Bedrock-runtime-compatible server on loopback; a context manager.

    Attributes:
        faults: the ``FaultPlan`` in force (may be replaced between calls).
        counters: ``Counters`` of everything received.
        facts: the ``FactsCache`` of the images received.
        denied_models: model ids answered with 403 AccessDeniedException.
        retired_models: base model ids answered with the end-of-life error.
        legacy_models: base model id -> its lifecycle fields for ``GetFoundationModel`` (see
            ``mark_legacy``); every other known model is ``ACTIVE``.
        control_plane_denied: ``GetFoundationModel`` answers 403 AccessDeniedException.
        foundation_model_requests: ``GetFoundationModel`` calls per model identifier (not in
            ``counters``, which count InvokeModel).
    """

    def __init__(
        self,
        *,
        faults: FaultPlan | None = None,
        denied_models: Iterable[str] = (),
        models: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        max_lifetime: float = 900.0,
        max_body_bytes: int = 40 * 1024 * 1024,
        region: str = "us-east-1",
        log_size: int = 10_000,
        retired_models: Iterable[str] = RETIRED_MODELS,
        legacy_models: Mapping[str, str] | None = None,
        control_plane_denied: bool = False,
        batch_plan: BatchPlan | None = None,
        s3_client: Any = None,
    ):
        """Create (not start) a server.

        Args:
            faults: injected faults and latency (default: none).
            denied_models: model ids (or their base ids) that get 403 AccessDeniedException.
            models: model ids known besides ``KNOWN_MODELS`` (others get 404).
            host: a loopback address; anything else is refused.
            port: 0 picks a free port.
            max_lifetime: seconds after which the server stops itself.
            max_body_bytes: larger requests are rejected.
            region: the region named in messages.
            log_size: requests kept in ``counters.log`` (the most recent).
            retired_models: base ids that have reached end of life (default ``RETIRED_MODELS``).
            legacy_models: base id -> end-of-life date (``YYYY-MM-DD``) of models that
                ``GetFoundationModel`` reports as ``LEGACY``.
            control_plane_denied: refuse ``GetFoundationModel`` with 403 AccessDeniedException
                (a caller without ``bedrock:GetFoundationModel``).
            batch_plan: how batch jobs run (timing, quotas, faults; default ``BatchPlan()``).
            s3_client: the S3 client batch jobs read and write with (default: one from the
                server process's environment, e.g. ``AWS_ENDPOINT_URL_S3``, made on first use).
        """
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"BedrockServer binds loopback only, not {host!r}")
        self.faults = faults or FaultPlan()
        self.denied_models = frozenset(denied_models)
        self.models = KNOWN_MODELS | frozenset(models)
        self.retired_models = frozenset(retired_models)
        self.legacy_models: dict[str, dict[str, str]] = {}
        for model_id, end_of_life in (legacy_models or {}).items():
            self.mark_legacy(model_id, end_of_life)
        self.control_plane_denied = control_plane_denied
        self.foundation_model_requests: Counter[str] = Counter()
        self.host = host
        self.port = port
        self.max_lifetime = max_lifetime
        self.max_body_bytes = max_body_bytes
        self.region = region
        self.counters = Counters(log_size=log_size)
        self.epoch = time.monotonic()
        self.facts = FactsCache()
        self._stopping = threading.Event()
        self._quota = Quota()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.batch = BatchJobs(self, plan=batch_plan, s3_client=s3_client)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> BedrockServer:
        """Bind and serve in a background thread.

        Returns:
            The server itself.
        """
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = HTTPServer((self.host, self.port), ControlPlaneHandler)
        httpd.app = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.name = f"bedrock-test-server-{self.port}"
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        logger.debug("Bedrock test server on %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); pending sleeps end at once."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> BedrockServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing boto3 at this server with fake credentials."""
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.endpoint_url,  # the control plane (GetFoundationModel)
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called (or the lifetime ran out)."""
        return self._stopping.is_set()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def reset(self) -> None:
        """Clear the counters and the quota windows (between benchmark runs)."""
        self.counters.reset()
        self._quota.clear()

    def counters_payload(self, *, with_log: bool = False) -> dict[str, Any]:
        """The counters' snapshot, and optionally the log as ``[model_id, outcome, at]`` rows."""
        payload = self.counters.snapshot()
        payload["now"] = round(time.monotonic() - self.epoch, 6)
        if with_log:
            payload["log"] = self.counters.log_rows()
        return payload


    # -- control plane ---------------------------------------------------------------------

    def mark_legacy(
        self, model_id: str, end_of_life: str, *, legacy_since: str | None = None, extended_access_from: str | None = None
    ) -> None:
        """Make ``GetFoundationModel`` report a model as ``LEGACY`` (InvokeModel still answers).

        Args:
            model_id: a base model id (a profile's prefix is dropped).
            end_of_life, legacy_since, extended_access_from: as ``control_plane.lifecycle_fields``.
        """
        self.legacy_models[base_model(model_id)] = lifecycle_fields(
            end_of_life, legacy_since=legacy_since, extended_access_from=extended_access_from
        )

    def get_foundation_model(self, model_identifier: str) -> dict[str, Any]:
        """``GetFoundationModel``: the model's details and lifecycle, the way Bedrock answers.

        Raises:
            ServiceError: 403 when ``control_plane_denied``; 404 as ``control_plane.foundation_model``.
        """
        self.foundation_model_requests[model_identifier] += 1
        if self.control_plane_denied:
            raise access_denied("User is not authorized to perform: bedrock:GetFoundationModel")
        return foundation_model(
            model_identifier,
            models=self.models,
            retired_models=self.retired_models,
            legacy_models=self.legacy_models,
            region=self.region,
        )

    # -- InvokeModel -----------------------------------------------------------------------

    def handle_invoke(
        self, model_id: str, operation: str, raw_body: bytes, *, credential: str = ""
    ) -> tuple[int, Any, dict[str, str]]:
        """Handle one request. Returns ``(status, payload or ServiceError, headers)``."""
        started = time.monotonic()
        rec: dict[str, Any] = {"model_id": model_id, "at": round(started - self.epoch, 6), "credential": credential}
        try:
            status, payload, headers, usage = self._invoke(model_id, operation, raw_body, rec)
        except ServiceError as error:
            rec.pop("outcome", None)
            self.counters.record(RequestRecord(outcome=error.outcome, status=error.status, **rec))
            return error.status, error, {}
        outcome = rec.pop("outcome", "ok")
        self.counters.record(
            RequestRecord(outcome=outcome, status=status, **rec), input_tokens=usage[0], output_tokens=usage[1]
        )
        headers = {**headers, "X-Amzn-Bedrock-Invocation-Latency": str(int((time.monotonic() - started) * 1000))}
        return status, payload, headers

    def _invoke(
        self, model_id: str, operation: str, raw_body: bytes, rec: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str], tuple[int, int]]:
        if operation != "invoke":
            raise unknown_operation(f"Operation {operation!r} is not served by this test server")
        base = base_model(model_id)
        kind = family(base)
        if model_id in self.denied_models or base in self.denied_models:
            raise access_denied("You don't have access to the model with the specified model ID.")
        if base in self.retired_models:
            raise ServiceError(404, "ResourceNotFoundException", END_OF_LIFE_MESSAGE, "end_of_life")
        if base not in self.models or kind is None:
            raise ServiceError(404, "ResourceNotFoundException", "Model not found.", "not_found")
        if kind == "anthropic":
            require_profile(model_id)
        self._quota.admit(self.faults, model_id)
        body = json_object(
            raw_body, empty=b"null",
            malformed="Malformed input request, please reformat your input and try again.",
            not_object="Malformed input request: #: expected type: JSONObject, please reformat your input and try again.",
        )
        return _HANDLERS[kind](self, model_id, body, rec)

    # -- what the model handlers share -----------------------------------------------------

    def draw_fault(self, family: str, *, followup: bool = False, images: tuple[Any, ...] = ()) -> str | None:
        """Draw a request's fault: raise it if it is an error, then wait the family's latency.

        Args:
            family: ``anthropic`` (answer faults may apply), ``titan`` or ``nova``.
            followup: whether the request is a corrective follow-up turn.
            images: the request's image facts (for the plan's per-image faults).

        Returns:
            The fault for ``deliver`` (an answer fault or a stall), or None.
        """
        fault = self.faults.draw(claude=family == "anthropic", followup=followup, images=images)
        self.faults.raise_transport(fault)
        self._sleep(self.faults.latency_for(family))
        return fault

    def deliver(
        self, fault: str | None, answer: Any, headers: dict[str, str], usage: tuple[int, int], rec: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str], tuple[int, int]]:
        """A handler's result, ``(200, answer, headers, usage)``, after a stall if one was drawn."""
        if fault == "stall_rate":
            # Answer only after the stall: a client with a shorter read timeout has given up by
            # then (the write fails quietly); a patient one gets a slow answer.
            rec["outcome"] = "stalled"
            self._sleep(self.faults.stall_seconds)
        return 200, answer, headers, usage


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (or ``--lifetime`` seconds)."""
    parser = argparse.ArgumentParser(
        description="Bedrock-compatible test server on loopback. Besides InvokeModel (and the control "
        "plane's GetFoundationModel, for AWS_ENDPOINT_URL_BEDROCK) it serves "
        f"GET {COUNTERS_PATH} (counters as JSON; ?log=1 adds [model, outcome, at] per request) "
        f"and POST {RESET_PATH} (clears counters and quota windows)."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--unavailable-rate", type=float, default=0.0, help="share of requests answered 503")
    parser.add_argument(
        "--hostile-rate", type=float, default=0.0,
        help="share of Claude requests answered with hostile metadata (huge, control characters, nested junk)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request, every model")
    parser.add_argument("--claude-latency", type=float, default=None, help="seconds per Claude request")
    parser.add_argument("--titan-latency", type=float, default=None, help="seconds per Titan request")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="latency varies by +/- this fraction")
    parser.add_argument("--rpm-quota", type=int, default=None, help="requests per minute per model id")
    parser.add_argument(
        "--quota-window", type=float, default=60.0,
        help="seconds of the sliding window the quota is enforced over (rpm * window / 60 requests in it)",
    )
    parser.add_argument("--log-size", type=int, default=10_000, help="requests kept in the log")
    args = parser.parse_args(argv)
    latency = {"*": args.latency}
    if args.claude_latency is not None:
        latency["anthropic"] = args.claude_latency
    if args.titan_latency is not None:
        latency["titan"] = args.titan_latency
    plan = FaultPlan(
        seed=args.seed,
        throttle_rate=args.throttle_rate,
        unavailable_rate=args.unavailable_rate,
        hostile_rate=args.hostile_rate,
        latency=latency,
        latency_jitter=args.latency_jitter,
        rpm_quota=args.rpm_quota,
        quota_window_s=args.quota_window,
    )
    server = BedrockServer(faults=plan, port=args.port, max_lifetime=args.lifetime, log_size=args.log_size).start()
    print(f"AWS_ENDPOINT_URL_BEDROCK_RUNTIME={server.endpoint_url}", flush=True)
    try:
        while not server._stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(json.dumps(server.counters.snapshot()["outcomes"]), flush=True)


if __name__ == "__main__":
    main()

