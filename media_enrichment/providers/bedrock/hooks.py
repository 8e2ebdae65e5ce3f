"""The botocore hook that tells a call's ``ModelGate`` about every HTTP attempt.

botocore retries inside one ``invoke_model`` call, so the gate only sees the call, not its
attempts. A ``response-received`` handler on the shared client reports each attempt to the gate
of the call in flight on the calling thread (thread-local state, set by ``reporting_to``): a
throttled attempt cuts the gate's adaptive concurrency and takes one more request from its
budget before botocore's retry; a success grows the concurrency back. The hook only observes:
botocore's retry decision is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from media_enrichment.ratecontrol import ModelGate

__all__ = ["install_gate_hook", "reporting_to"]

_THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})
_GATE_EVENT = "response-received.bedrock-runtime.InvokeModel"
_GATE_HOOK_ID = "media-enrichment-gate"
_current = threading.local()  # .gate: the ModelGate of the call in flight on this thread


def _on_response(response_dict: Any = None, parsed_response: Any = None, exception: Any = None, **_: Any) -> None:
    """botocore ``response-received`` handler: report one attempt's outcome to its gate.

    Observes only (its return value is ignored by botocore), so botocore's retry decision is
    unchanged. Throttling (429, except ModelNotReady) cuts the gate's concurrency; a 2xx grows
    it; a throttled or 5xx attempt, which botocore retries, takes one more request from the
    gate's request budget first.
    """
    gate: ModelGate | None = getattr(_current, "gate", None)
    if gate is None or not isinstance(response_dict, dict):
        return
    status = int(response_dict.get("status_code") or 0)
    error = (parsed_response or {}).get("Error") if isinstance(parsed_response, dict) else None
    code = str((error or {}).get("Code") or "")
    if 200 <= status < 300:
        gate.succeeded()
        return
    throttled = code in _THROTTLE_CODES or (status == 429 and code != "ModelNotReadyException")
    if throttled:
        gate.throttled()
    if throttled or status == 429 or status >= 500:
        gate.retry_budget()


def install_gate_hook(client: Any) -> None:
    """Register the attempt-reporting hook on a ``bedrock-runtime`` client (idempotent).

    Args:
        client: the shared client; the hook reports to whichever gate the calling thread holds.
    """
    client.meta.events.register(_GATE_EVENT, _on_response, unique_id=_GATE_HOOK_ID)


@contextmanager
def reporting_to(gate: ModelGate) -> Iterator[None]:
    """Within the block, the hook reports this thread's attempts to ``gate`` (then to the previous one).

    Args:
        gate: the gate of the call about to be sent on this thread.
    """
    previous, _current.gate = getattr(_current, "gate", None), gate
    try:
        yield
    finally:
        _current.gate = previous
