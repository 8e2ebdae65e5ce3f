"""Every setting can come from its ``MEDIA_ENRICH_*`` variable, and a run uses it; a value given
for the run (a flow parameter, a command-line option) beats the variable; a bad value is one line
naming where it came from, before Prefect starts.

Each field of ``Settings`` is checked (the list is ``Settings.model_fields``, so a new field
fails ``test_every_setting_is_checked`` until it gets a check). Most checks observe the run:
chunks in its summary, vectors in the table, what the Bedrock test server received. The few
that a short run cannot show are read from the settings the run reports in its summary.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.config import Settings, env_name
from media_enrichment.dataset import Dataset
from media_enrichment.errors import RetryableProviderError
from media_enrichment.prompts import load_prompt
from media_enrichment.testing import BedrockServer, FaultPlan

NOVA = "amazon.nova-2-multimodal-embeddings-v1:0"
GLOBAL_HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"


class Trial:
    """One check's world: variables set through monkeypatch, the Bedrock test server on demand,
    runs of the real flow on the sample catalogue."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, manifest: Path, stack: ExitStack):
        self.env, self.tmp, self.manifest, self._stack = monkeypatch, tmp_path, manifest, stack
        self._server: BedrockServer | None = None

    def set(self, field: str, value: str) -> None:
        self.env.setenv(env_name(field), value)

    def bedrock(self, **options) -> BedrockServer:
        if self._server is None:
            self._server = self._stack.enter_context(BedrockServer(**options))
            self.env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", self._server.endpoint_url)
            self.env.setenv("AWS_ENDPOINT_URL_BEDROCK", self._server.endpoint_url)
        return self._server

    def run(self, **parameters) -> dict:
        parameters.setdefault("source", str(self.manifest))
        parameters.setdefault("dataset", str(self.tmp / "ds"))
        return enrich_catalog(**parameters)

    def run_bedrock(self, **parameters) -> dict:
        self.bedrock()
        return self.run(provider="bedrock", **parameters)

    def rows(self, dataset: Path | None = None) -> pd.DataFrame:
        return Dataset(str(dataset or self.tmp / "ds")).read_assets()

    def bad_image_manifest(self) -> Path:
        (self.tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        manifest = self.tmp / "broken.csv"
        manifest.write_text("image_id,path\nbroken,broken.png\n")
        return manifest


CHECKS: dict[str, Callable[[Trial], None]] = {}


def observes(field: str):
    def register(check: Callable[[Trial], None]) -> Callable[[Trial], None]:
        CHECKS[field] = check
        return check

    return register


@observes("provider")
def _(t: Trial) -> None:
    server = t.bedrock()
    t.set("provider", "bedrock")
    summary = t.run(limit=2)  # no provider parameter
    assert not summary["enrichment_model"].startswith("local/")
    assert any("anthropic" in model for model in server.counters.requests)


@observes("dataset")
def _(t: Trial) -> None:
    t.set("dataset", str(t.tmp / "from-env"))
    summary = t.run_bedrock(limit=2, dataset=None)
    assert summary["dataset"] == str(t.tmp / "from-env")
    assert len(t.rows(t.tmp / "from-env")) == 2


@observes("chunk_size")
def _(t: Trial) -> None:
    t.set("chunk_size", "3")
    assert t.run_bedrock(limit=7)["chunks"] == 3  # 1 with the default of 16


@observes("concurrency")
def _(t: Trial) -> None:
    t.set("concurrency", "7")
    # The cap of each model's call window (it starts at 4 and grows up to the cap).
    assert t.run_bedrock(limit=2)["rate_control"]["describer"]["max_in_flight"] == 7


@observes("commit_rows")
def _(t: Trial) -> None:
    t.set("commit_rows", "2")
    summary = t.run_bedrock(limit=4, chunk_size=1)
    assert summary["assets_version"] == 1, "four rows, two per commit: versions 0 and 1"


@observes("embedding_dim")
def _(t: Trial) -> None:
    t.set("embedding_dim", "256")
    t.run_bedrock(limit=2)
    rows = t.rows()
    assert set(rows["embedding_dim"]) == {256} and all(len(v) == 256 for v in rows["embedding"])


@observes("limit")
def _(t: Trial) -> None:
    t.set("limit", "3")
    summary = t.run_bedrock()
    assert summary["catalog_rows"] == 3 and len(t.rows()) == 3


@observes("force")
def _(t: Trial) -> None:
    assert t.run_bedrock(limit=2)["enriched"] == 2
    t.set("force", "true")
    again = t.run_bedrock(limit=2)
    assert again["enriched"] == 2 and again["reused"] == 0


@observes("batch")
def _(t: Trial) -> None:
    t.set("batch", "from-env")
    t.run_bedrock(limit=2)
    assert set(t.rows()["batch"]) == {"from-env"}


@observes("allowed_roots")
def _(t: Trial) -> None:
    sample = t.manifest.parent
    first = sorted(p for p in sample.rglob("*.jpg"))[:2]
    manifest = t.tmp / "elsewhere" / "m.csv"  # its own folder holds no image: both rows point outside
    manifest.parent.mkdir()
    manifest.write_text("image_id,path\n" + "".join(f"i{n},{p}\n" for n, p in enumerate(first)))
    refused = t.run(source=str(manifest), dataset=str(t.tmp / "refused"))
    assert refused["failed"] == 2 and refused["enriched"] == 0
    failures = Dataset(str(t.tmp / "refused")).read_failures()
    assert set(failures["error_type"]) == {"PathNotAllowedError"} and set(failures["stage"]) == {"read"}
    given = t.run(source=str(manifest), dataset=str(t.tmp / "given"), allowed_roots=[str(sample)])
    assert given["enriched"] == 2, "the flow parameter widens the roots"
    t.set("allowed_roots", f"/nowhere,{sample}")
    assert t.run(source=str(manifest))["enriched"] == 2


@observes("max_image_bytes")
def _(t: Trial) -> None:
    t.set("max_image_bytes", "100")  # every sample image is larger
    summary = t.run(limit=2)
    assert summary["failed"] == 2 and summary["enriched"] == 0
    failures = Dataset(str(t.tmp / "ds")).read_failures()
    assert set(failures["error_type"]) == {"ImageTooLargeError"} and set(failures["stage"]) == {"read"}


@observes("max_failure_attempts")
def _(t: Trial) -> None:
    server = t.bedrock(faults=FaultPlan(refusal_rate=1.0))  # every description refused: not permanent
    first = t.run_bedrock(limit=2)
    assert first["failed"] == 2 and first["given_up"] == 0
    t.set("max_failure_attempts", "1")
    before = server.counters.total
    second = t.run_bedrock(limit=2)
    assert second["given_up"] == 2, "one try was all the variable allowed (the default allows 3)"
    assert server.counters.total == before, "images left alone call no model"


@observes("retry_failures")
def _(t: Trial) -> None:
    source = str(t.bad_image_manifest())
    assert t.run(source=source)["failed"] == 1
    assert t.run(source=source)["given_up"] == 1, "an undecodable image is left alone"
    t.set("retry_failures", "true")
    again = t.run(source=source)
    assert again["given_up"] == 0 and again["failed"] == 1


@observes("describer_model_id")
def _(t: Trial) -> None:
    server = t.bedrock()
    t.set("describer_model_id", GLOBAL_HAIKU)
    summary = t.run_bedrock(limit=2)
    assert summary["enrichment_model"] == GLOBAL_HAIKU and set(t.rows()["enrichment_model"]) == {GLOBAL_HAIKU}
    assert server.counters.requests[GLOBAL_HAIKU] >= 2


@observes("embedder_model_id")
def _(t: Trial) -> None:
    server = t.bedrock()
    t.set("embedder_model_id", NOVA)
    t.run_bedrock(limit=2)
    assert set(t.rows()["embedding_model"]) == {NOVA} and server.counters.requests[NOVA] >= 2


@observes("prompt_file")
def _(t: Trial) -> None:
    prompt = t.tmp / "my_prompt.txt"
    prompt.write_text(load_prompt().text + "\nPrefer short titles.\n")
    t.set("prompt_file", str(prompt))
    t.run_bedrock(limit=2)
    assert set(t.rows()["prompt_version"]) == {load_prompt(prompt).version} != {load_prompt().version}


@observes("max_output_tokens")
def _(t: Trial) -> None:
    server = t.bedrock()
    t.set("max_output_tokens", "300")
    t.run_bedrock(limit=2)
    sent = [r.max_tokens for r in server.counters.log if r.turns]  # Claude requests (the access check asks 8)
    assert sent.count(300) >= 2 and 1024 not in sent


@observes("max_images")
def _(t: Trial) -> None:
    t.set("max_images", "2")
    summary = t.run(limit=5)
    assert (summary["enriched"], summary["deferred"]) == (2, 3) and summary["stopped"].startswith("max_images")


@observes("max_cost_usd")
def _(t: Trial) -> None:
    prices = t.tmp / "budget-prices.json"
    prices.write_text(json.dumps({"local/": {"per_image": 0.5}}))
    t.set("price_file", str(prices))
    t.set("max_cost_usd", "0.9")
    summary = t.run(limit=4, chunk_size=1)  # a second $0.50 image would pass $0.90
    assert summary["enriched"] == 1 and summary["stopped"].startswith("max_cost_usd")


@observes("price_file")
def _(t: Trial) -> None:
    prices = t.tmp / "prices.json"
    prices.write_text(json.dumps({"local/": {"per_image": 0.5}}))  # the local provider is free by default
    t.set("price_file", str(prices))
    assert t.run(limit=1)["estimated_cost_usd"] == pytest.approx(0.5)


@observes("describer_rpm")
def _(t: Trial) -> None:
    t.set("describer_rpm", "6000")
    assert t.run_bedrock(limit=2)["rate_control"]["describer"]["rpm"] == 6000


@observes("describer_tpm")
def _(t: Trial) -> None:
    t.set("describer_tpm", "900000")
    assert t.run_bedrock(limit=2)["rate_control"]["describer"]["tpm"] == 900000


@observes("embedder_rpm")
def _(t: Trial) -> None:
    t.set("embedder_rpm", "5000")
    assert t.run_bedrock(limit=2)["rate_control"]["embedder"]["rpm"] == 5000


@observes("adaptive_concurrency")
def _(t: Trial) -> None:
    t.set("adaptive_concurrency", "false")
    describer = t.run_bedrock(limit=2)["rate_control"]["describer"]
    # A fixed window at the cap (an adaptive one starts at 4).
    assert describer["limit"] == describer["lowest_limit"] == describer["max_in_flight"] == 32


@observes("shared_rate_limits")
def _(t: Trial) -> None:
    t.set("describer_rpm", "6000")
    t.set("shared_rate_limits", "true")
    assert "PrefectRateLimiter" in t.run_bedrock(limit=2)["rate_control"]["describer"]["rpm"]


@observes("task_runner")
def _(t: Trial) -> None:
    t.set("task_runner", "dask")
    t.set("dask_workers", "1")
    summary = t.run_bedrock(limit=2)
    assert summary["task_runner"] == "DaskTaskRunner"
    assert len(summary["workers"]) == 1 and not summary["workers"][0].endswith(f":{os.getpid()}")


@observes("aws_credentials_block")
def _(t: Trial) -> None:
    from prefect_aws import AwsCredentials

    server = t.bedrock()
    AwsCredentials(aws_access_key_id="AKIDSETTINGSBLOCK", aws_secret_access_key="s").save("settings-env", overwrite=True)
    t.set("aws_credentials_block", "settings-env")
    t.run_bedrock(limit=1)
    assert {c.split("/")[0] for c in server.counters.credentials} == {"AKIDSETTINGSBLOCK"}


@observes("aws_region")
def _(t: Trial) -> None:
    server = t.bedrock()
    t.env.setenv("AWS_REGION", "us-west-2")
    t.set("aws_region", "eu-west-3")  # beats AWS_REGION and AWS_DEFAULT_REGION
    t.run_bedrock(limit=1)
    assert {c.split("/")[1] for c in server.counters.credentials} == {"eu-west-3"}


@observes("aws_profile")
def _(t: Trial) -> None:
    server = t.bedrock()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        t.env.delenv(name, raising=False)
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[enrich]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = s\n"
    )
    t.set("aws_profile", "enrich")
    t.run_bedrock(limit=1)
    assert {c.split("/")[0] for c in server.counters.credentials} == {"AKIDFROMPROFILE"}


@observes("bedrock_max_attempts")
def _(t: Trial) -> None:
    server = t.bedrock(faults=FaultPlan(throttle_rate=1.0))
    t.set("bedrock_max_attempts", "2")
    t.set("bedrock_retry_mode", "standard")
    with pytest.raises(RetryableProviderError):
        t.run_bedrock(limit=1)  # the access check is throttled: botocore tries twice, then the run stops
    assert server.counters.total == 2, "the default would have tried 4 times"


#: Settings a short run cannot show: checked in the settings the run reports (string as the
#: environment gives it, value the run used).
SEEN_IN_SUMMARY = {
    "transient_retries": ("5", 5),
    "retry_delay_s": ("0.25", 0.25),
    "bedrock_retry_mode": ("adaptive", "adaptive"),
    "bedrock_connect_timeout": ("2.5", 2.5),
    "bedrock_read_timeout": ("33", 33.0),
    "dask_address": ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),  # used with task_runner=dask only
    "dask_workers": ("3", 3),
    "chunk_tasks": ("3", 3),  # chunk tasks at once: the orchestration's shape, no result changes
    # Batch inference: with auto and one image (below batch_min_records) the run is on demand; the
    # batch path itself is observed in tests/test_batch_driver.py.
    "invocation": ("auto", "auto"),
    "batch_s3_uri": ("s3://media/batch/", "s3://media/batch"),
    "batch_role_arn": ("arn:aws:iam::123456789012:role/BedrockBatch", "arn:aws:iam::123456789012:role/BedrockBatch"),
    "batch_min_records": ("150", 150),
    "batch_max_records_per_file": ("500", 500),
    "batch_max_records_per_job": ("1000", 1000),
    "batch_max_bytes_per_file": ("100000000", 100_000_000),
    "batch_max_bytes_per_job": ("200000000", 200_000_000),
    "batch_fallback": ("fail", "fail"),
    "batch_poll_s": ("5", 5.0),
    "batch_timeout_hours": ("48", 48),
}


def test_every_setting_is_checked():
    assert not set(CHECKS) & set(SEEN_IN_SUMMARY)
    assert set(CHECKS) | set(SEEN_IN_SUMMARY) == set(Settings.model_fields), "give each new setting a check here"
    for field, (_, value) in SEEN_IN_SUMMARY.items():
        assert value != Settings.model_fields[field].default, f"{field}: the check must differ from the default"


@pytest.fixture
def trial(prefect_harness, aws_env, tmp_path, sample_manifest):
    with ExitStack() as stack:
        yield Trial(aws_env, tmp_path, sample_manifest, stack)


@pytest.mark.parametrize("field", sorted(CHECKS))
def test_a_run_uses_the_variable(field, trial):
    CHECKS[field](trial)


def test_the_run_reports_the_settings_it_used(trial):
    for field, (text, _) in SEEN_IN_SUMMARY.items():
        trial.set(field, text)
    used = trial.run_bedrock(limit=1)["settings"]
    for field, (_, value) in SEEN_IN_SUMMARY.items():
        assert used[field] == value, field


def test_a_flow_parameter_beats_the_variable(trial):
    trial.set("chunk_size", "3")
    trial.set("embedding_dim", "384")
    summary = trial.run_bedrock(limit=4, chunk_size=4, embedding_dim=256)
    assert summary["chunks"] == 1 and summary["settings"]["chunk_size"] == 4
    assert set(trial.rows()["embedding_dim"]) == {256}


# -- the command line --------------------------------------------------------------------------


def _summary_value(stdout: str, key: str) -> str:
    found = re.search(rf"│\s*{key}\s*│\s*(\S+)", stdout)
    assert found, stdout
    return found.group(1)


def test_cli_run_takes_the_variable_and_a_flag_beats_one(cli, sample_manifest, tmp_path):
    done = cli(
        "run", str(sample_manifest), "--dataset", "ds", "--limit", "4", "--embedding-dim", "256",
        cwd=tmp_path, MEDIA_ENRICH_CHUNK_SIZE="3", MEDIA_ENRICH_EMBEDDING_DIM="384",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _summary_value(done.stdout, "chunks") == str(math.ceil(4 / 3)), "MEDIA_ENRICH_CHUNK_SIZE=3 was used"
    rows = Dataset(str(tmp_path / "ds")).read_assets()
    assert len(rows) == 4 and set(rows["embedding_dim"]) == {256}, "--embedding-dim beat MEDIA_ENRICH_EMBEDDING_DIM"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"MEDIA_ENRICH_EMBEDDING_DIM": "123"}, "MEDIA_ENRICH_EMBEDDING_DIM: must be 256, 384 or 1024"),
        (("--embedding-dim", "123"), {}, "--embedding-dim: must be 256, 384 or 1024"),
        (("--chunk-size", "0"), {"MEDIA_ENRICH_CHUNK_SIZE": "5"}, "--chunk-size: must be greater than or equal to 1 (got 0)"),
        ((), {"MEDIA_ENRICH_CONCURRENCY": "many"}, "MEDIA_ENRICH_CONCURRENCY: must be a valid integer"),
        (("--provider", "bedrok"), {}, "--provider: must be 'local' or 'bedrock' (got bedrok)"),
    ],
)
def test_cli_refuses_a_bad_value_in_one_line_before_prefect_starts(cli, sample_manifest, tmp_path, args, env, expected):
    done = cli("run", str(sample_manifest), *args, cwd=tmp_path, timeout=120, **env)
    assert done.returncode == 1
    assert expected in done.stdout and len(done.stdout.strip().splitlines()) == 1, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / ".prefect").exists() and not (tmp_path / "data").exists(), "Prefect never started"


def test_backfill_refuses_batches_the_manifest_does_not_label(cli, sample_manifest, tmp_path):
    unlabelled = cli("backfill", str(sample_manifest), "--batch", "2026-11-01", cwd=tmp_path, timeout=120)
    assert unlabelled.returncode == 1 and "the manifest has no 'batch' column" in unlabelled.stdout, unlabelled.stdout
    frame = pd.read_csv(sample_manifest, dtype=str, keep_default_na=False).head(4)
    frame["path"] = [str(sample_manifest.parent / p) for p in frame["path"]]
    frame["batch"] = ["b1", "b1", "b2", "b2"]
    frame.to_csv(tmp_path / "batched.csv", index=False)
    unknown = cli("backfill", "batched.csv", "-b", "b1", "-b", "b3", cwd=tmp_path, timeout=120)
    assert unknown.returncode == 1 and "no rows of batch(es) b3" in unknown.stdout and "b1, b2" in unknown.stdout
    folder = cli("backfill", str(sample_manifest.parent), "-b", "b1", cwd=tmp_path, timeout=120)
    assert folder.returncode == 1 and "{batch}" in folder.stdout
    for done in (unlabelled, unknown, folder):
        assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / ".prefect" / "prefect.db").exists(), "refused before Prefect's server started"


def test_run_with_a_batch_no_row_has_is_an_error(cli, sample_manifest, tmp_path):
    (tmp_path / "batched.csv").write_text(f"image_id,path,batch\na,{sample_manifest.parent / 'x.png'},b1\n")
    done = cli("run", "batched.csv", "--batch", "b9", cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "no rows of batch 'b9'" in done.stdout and "b1" in done.stdout


def test_serve_checks_its_file_before_serving(cli, tmp_path):
    (tmp_path / "bad-param.yaml").write_text(
        "deployments:\n  - name: n\n    entrypoint: media_enrichment_prefect/flows/enrich.py:enrich_catalog\n"
        "    parameters: {source: a.csv, embedding_dim: 123}\n"
    )
    (tmp_path / "bad-flow.yaml").write_text("deployments:\n  - name: n\n    entrypoint: media_enrichment_prefect/flows/enrich.py:nothing\n")
    (tmp_path / "bad-yaml.yaml").write_text("deployments: [\n")
    cases = {
        "missing.yaml": "deployments file not found",
        "bad-param.yaml": "deployment 'n': parameter embedding_dim: must be 256, 384 or 1024",
        "bad-flow.yaml": "names no flow",
        "bad-yaml.yaml": "is not valid YAML",
    }
    for name, expected in cases.items():
        done = cli("serve", "--file", name, cwd=tmp_path, timeout=120)
        assert done.returncode == 1 and expected in done.stdout, (name, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
    env_bad = cli("serve", cwd=tmp_path, timeout=120, MEDIA_ENRICH_EMBEDDING_DIM="7")
    assert env_bad.returncode == 1 and "MEDIA_ENRICH_EMBEDDING_DIM: must be" in env_bad.stdout, env_bad.stdout


def test_the_default_deployments_file_is_the_projects_and_pins_no_settings(tmp_path, monkeypatch):
    from media_enrichment_prefect.flows.deployments import DEFAULT_FILE, load_deployments

    monkeypatch.chdir(tmp_path)  # outside the repository
    assert DEFAULT_FILE.is_file() and DEFAULT_FILE.is_absolute()
    deployments = {d.name: d for d in load_deployments()}
    assert set(deployments) == {"nightly", "backfill", "backfill-launcher"}
    assert deployments["nightly"].parameters == {"source": "data/sample/catalog.csv"}
    # Backfills go to Bedrock batch jobs when they are large enough (issue 13): the one value pinned.
    assert deployments["backfill"].parameters == {"invocation": "auto"}
    assert deployments["backfill-launcher"].parameters == {}
    served = {d.name: d for d in load_deployments(overrides={"dataset": "given/ds", "source": "given.csv"})}
    assert served["nightly"].parameters == {"source": "given.csv", "dataset": "given/ds"}
    assert served["backfill-launcher"].parameters == {"source": "given.csv", "dataset": "given/ds"}


def test_chunks_in_flight_keep_each_process_windows_fed():
    """Two chunks per process by default; a local Dask cluster has one set of windows per
    worker, so it gets that many per worker; a set ``chunk_tasks`` or a remote cluster (whose
    workers this process cannot count) is taken as it is."""
    assert Settings().chunks_in_flight == 2
    assert Settings(concurrency=64).chunks_in_flight == 2
    assert Settings(concurrency=96).chunks_in_flight == 3
    assert Settings(task_runner="dask", dask_workers=3).chunks_in_flight == 6
    assert Settings(task_runner="dask", dask_address="tcp://scheduler:8786").chunks_in_flight == 2
    assert Settings(task_runner="dask", dask_workers=3, chunk_tasks=4).chunks_in_flight == 4
