"""How the test server answers a batch job's records: as ``InvokeModel`` answers the same body.

``answer_records`` answers the records of a job's input files in order (a ``PartiallyCompleted``
plan: only ``partial_share`` of them; a stop ends it early) and writes each output file, its
lines shuffled (the service does not keep the input order), then the manifest. A record is
answered by its model's handler (``claude``, ``titan``, ``nova``) through ``_RecordServer``:
the server's image facts, without the on-demand fault plan or latency, so its ``modelOutput``
equals the on-demand answer for the same body (up to the random message and tool-use ids). A
body the runtime would refuse gets ``error: {errorCode, errorMessage}`` (400 for a Converse-type
job), and ``record_error_rate`` injects errors, drawn per record id.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media_enrichment.testing.batch.files import InputFile, JobFiles
from media_enrichment.testing.batch.job import BatchJob
from media_enrichment.testing.claude import handle_claude
from media_enrichment.testing.errors import ServiceError
from media_enrichment.testing.faults import FaultPlan
from media_enrichment.testing.models import base_model, family
from media_enrichment.testing.nova import handle_nova
from media_enrichment.testing.titan import handle_titan

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

__all__ = ["answer_records"]


class _RecordServer:
    """What a model handler needs of a server, for one batch record: the server's image facts,
    and no fault, latency or stall (a batch record is not an on-demand request)."""

    def __init__(self, server: BedrockServer):
        self.facts = server.facts
        self.faults = FaultPlan()

    def draw_fault(self, family: str, *, followup: bool = False, images: tuple[Any, ...] = ()) -> None:
        return None

    def deliver(self, fault: Any, answer: Any, headers: dict[str, str], usage: tuple[int, int], rec: dict[str, Any]):
        return 200, answer, headers, usage


_HANDLERS: dict[str, Callable[..., Any]] = {"anthropic": handle_claude, "titan": handle_titan, "nova": handle_nova}


def answer_records(
    server: BedrockServer, files: JobFiles, lock: threading.RLock, job: BatchJob, inputs: list[InputFile]
) -> bool:
    """Answer the records and write the output; whether only part of them were processed."""
    plan = job.plan
    total = sum(len(records) for _, _, records in inputs)
    budget = total if plan.outcome != "PartiallyCompleted" else int(total * plan.partial_share)
    rng = random.Random(f"{plan.seed}:{job.job_id}")
    shim = _RecordServer(server)
    done = 0
    for _bucket, key, records in inputs:
        lines = []
        for record in records:
            if done >= budget or job.stop_requested.is_set() or server.stopping:
                break
            done += 1
            lines.append(_answer(lock, job, shim, record))
        rng.shuffle(lines)  # the output order is not the input's
        files.write_output(job, key, lines)
    files.write_manifest(job, total)
    return done < total


def _answer(lock: threading.RLock, job: BatchJob, shim: _RecordServer, record: dict[str, Any]) -> str:
    """One output line: the record with ``modelOutput`` or ``error``; counts updated."""
    record_id = str(record["recordId"])
    body = record["modelInput"]
    out: dict[str, Any] = {"recordId": record_id, "modelInput": body}
    outcome = "ok"
    usage = (0, 0)
    if _draw(job.plan.seed, record_id) < job.plan.record_error_rate:
        out["error"] = {"errorCode": job.plan.record_error_code, "errorMessage": job.plan.record_error_message}
        outcome = "injected"
    elif job.invocation_type == "Converse":
        message = "This test server answers InvokeModel-type batch jobs only."
        if "toolConfig" in body:
            message = "Tool calling is not supported in batch inference jobs of the Converse invocation type."
        out["error"] = {"errorCode": 400, "errorMessage": message}
        outcome = "error"
    else:
        handler = _HANDLERS[family(base_model(job.model_id)) or "anthropic"]
        try:
            _, answer, _, usage = handler(shim, job.model_id, body, {})
            out["modelOutput"] = answer
        except ServiceError as error:
            out["error"] = {"errorCode": error.status, "errorMessage": error.message}
            outcome = "error"
    with lock:
        job.processed += 1
        if outcome == "ok":
            job.success += 1
        else:
            job.errors += 1
        job.input_tokens += usage[0]
        job.output_tokens += usage[1]
        job.record_outcomes[record_id] = outcome
        job.last_modified = time.time()
    return json.dumps(out, separators=(",", ":"))


def _draw(seed: int, record_id: str) -> float:
    """A uniform draw in [0, 1) fixed by the seed and the record id."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
