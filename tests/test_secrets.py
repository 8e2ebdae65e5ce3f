"""Secrets are never written: a run with planted AWS credentials leaves none of them anywhere.

Recognisable fake keys and session tokens are planted in the environment and in a prefect-aws
``AwsCredentials`` block; one enrich flow run against the loopback Bedrock server meets faults
that produce errors and failure rows (throttling beyond retries, refusals, an undecodable image,
a missing file). Then everything the run wrote is searched: captured terminal output and log
records, the flow run's Prefect logs, artifacts, parameters and state, the assets and failures
tables, every file under the dataset (staging and reports included) and Prefect's local storage.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
from pathlib import Path

import pytest

from media_enrichment.dataset import Dataset
from media_enrichment.testing import BedrockServer, FaultPlan
from tests.helpers import write_catalog

pytestmark = pytest.mark.usefixtures("prefect_harness")

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
_UPPER = string.ascii_uppercase + string.digits
_SECRET = string.ascii_letters + string.digits + "+/"


def _credentials(tag: str) -> dict[str, str]:
    """A fake access key id (AKIA + 16), a 40-character secret and a long session token."""
    return {
        "key": "AKIA" + tag + "".join(secrets.choice(_UPPER) for _ in range(16 - len(tag))),
        "secret": "".join(secrets.choice(_SECRET) for _ in range(40)),
        "token": "IQoJb3JpZ2luX2Vj" + "".join(secrets.choice(_SECRET) for _ in range(356)),
    }


def _needles(*creds: dict[str, str]) -> dict[str, str]:
    """Each secret, and a prefix of the secret and token (a cut copy is a leak too)."""
    out = {}
    for i, c in enumerate(creds):
        out.update({f"key{i}": c["key"], f"secret{i}": c["secret"], f"secret{i}[:20]": c["secret"][:20]})
        out.update({f"token{i}": c["token"], f"token{i}[16:56]": c["token"][16:56]})
    return out


def _catalog(folder: Path) -> Path:
    """Eight PNGs, an undecodable one and a row for a file that does not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    return write_catalog(
        folder, 8, size=lambda i: (48 + 4 * i, 40), colour=lambda i: (30 * i, 120, 200 - 20 * i),
        extra_rows=[("broken", "broken.png"), ("missing", "missing.png")],
    )


def _prefect_records(flow_run_id: str) -> dict[str, str]:
    """The flow run's logs, artifacts, parameters and state, and its task runs, as JSON text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert logs, "the run logged to the API"
    assert artifacts, "the run published artifacts"
    return {
        "logs": json.dumps([log.model_dump(mode="json") for log in logs]),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
        "flow_run": flow_run.model_dump_json(),
        "task_runs": json.dumps([t.model_dump(mode="json") for t in task_runs]),
    }


def _files(root: Path, *, skip_suffixes: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.name.endswith(skip_suffixes)
    }


def test_no_secret_is_written_anywhere_by_a_run_with_errors(monkeypatch, tmp_path, capsys, caplog):
    from prefect_aws import AwsCredentials

    from media_enrichment_prefect.flows.enrich import enrich_catalog

    env_creds, block_creds = _credentials("ENV"), _credentials("BLK")
    needles = _needles(env_creds, block_creds)
    for name in list(os.environ):
        if name.startswith(("AWS_", "MEDIA_ENRICH_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", env_creds["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env_creds["secret"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", env_creds["token"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    AwsCredentials(
        aws_access_key_id=block_creds["key"],
        aws_secret_access_key=block_creds["secret"],
        aws_session_token=block_creds["token"],
        region_name="us-east-1",
    ).save("secrets-test", overwrite=True)
    monkeypatch.setenv("MEDIA_ENRICH_AWS_CREDENTIALS_BLOCK", "secrets-test")
    monkeypatch.setenv("MEDIA_ENRICH_BEDROCK_MAX_ATTEMPTS", "1")  # throttling beyond retries ...
    monkeypatch.setenv("MEDIA_ENRICH_TRANSIENT_RETRIES", "0")  # ... reaches the failures table
    monkeypatch.setenv("MEDIA_ENRICH_BEDROCK_READ_TIMEOUT", "5")
    # Everything the project logs, at every level (botocore's own debug logging is left off: it
    # prints request headers, a documented botocore behaviour outside this project).
    for name in ("media_enrichment", "media_enrichment_prefect", "prefect.flow_runs", "prefect.task_runs"):
        caplog.set_level(logging.DEBUG, logger=name)

    manifest = _catalog(tmp_path / "cat")
    dataset = tmp_path / "ds"
    # Two images fail on every request whatever order the calls arrive in (a chunk's images run
    # side by side): img0 (48 px wide) is throttled beyond retries, img1 (52 px) refused.
    plan = FaultPlan(by_image=lambda facts: {48: "throttle_rate", 52: "refusal_rate"}.get(facts.width))
    with BedrockServer(max_lifetime=300, faults=plan) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        summary = enrich_catalog(source=str(manifest), dataset=str(dataset), provider="bedrock", chunk_size=3)
        signed_by = set(server.counters.credentials)
    assert signed_by == {f"{block_creds['key']}/us-east-1"}, "the block's credentials signed the calls"

    store = Dataset(str(dataset))
    failures = store.read_failures()
    assert summary["failed"] == len(failures) >= 3 and summary["enriched"] >= 1
    assert {"broken", "missing"} <= set(failures["image_id"])
    error_types = dict(zip(failures["image_id"], failures["error_type"], strict=True))
    assert error_types["img0"] == "ThrottlingException", error_types
    # Refused again after the corrective turn: the row names the answer's kind (a refusal stop
    # reason, or a text answer without the tool call).
    assert error_types["img1"] in {"refusal", "no_metadata"}, error_types

    out, err = capsys.readouterr()
    texts: dict[str, str] = {
        "stdout": out,
        "stderr": err,
        "log records": "\n".join(
            f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
        ),
        "summary": json.dumps(summary, default=str),
        "assets": store.read_assets().to_json(date_format="iso"),
        "failures": failures.to_json(date_format="iso"),
        "history": json.dumps(store.history(), default=str),
        **_prefect_records(summary["run_id"]),
    }
    blobs = _files(dataset)
    prefect_home = Path(os.environ["PREFECT_HOME"])
    # The Prefect database holds the block by design (that is where a block lives); its other
    # contents were read through the API above.
    blobs.update(_files(prefect_home, skip_suffixes=(".db", ".db-wal", ".db-shm", ".db-journal")))
    assert any("reports" in path for path in blobs), "the run's report files are searched"

    leaks = [
        f"{needle} in {where}"
        for needle, value in needles.items()
        for where, text in texts.items()
        if value in text
    ]
    leaks += [
        f"{needle} in {path}"
        for needle, value in needles.items()
        for path, data in blobs.items()
        if value.encode() in data
    ]
    assert not leaks, leaks
