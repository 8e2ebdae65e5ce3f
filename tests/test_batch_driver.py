"""Batch inference through the run driver: moto's S3 server, the Bedrock test server, the real driver."""

from __future__ import annotations

import io
import json
import os
import re
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from media_enrichment.config import build_settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError
from media_enrichment.pipeline.driver import open_run
from media_enrichment.testing.batch import BatchPlan
from tests.helpers import batch_bedrock_server

ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
FAST = BatchPlan(state_seconds=0.02, in_progress_seconds=0.02, min_records=10)
IMAGES = 24


@pytest.fixture
def server(s3, aws_env):
    """The Bedrock test server (runtime and control plane), its batch jobs on moto's S3."""
    with batch_bedrock_server(aws_env, FAST) as srv:
        yield srv


@pytest.fixture
def catalog(tmp_path):
    """A folder of small distinct PNGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(IMAGES):
        pixels = np.clip(rng.integers(0, 256, 3) + rng.integers(-20, 20, (20 + i % 5, 28 + i % 7, 3)), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="PNG")
        (folder / f"img{i:03d}.png").write_bytes(buffer.getvalue())
    return folder


def settings(tmp_path, **given):
    values = {
        "provider": "bedrock", "dataset": str(tmp_path / "ds"), "embedding_dim": 256, "invocation": "batch",
        "batch_s3_uri": "s3://media/batch", "batch_role_arn": ROLE, "batch_min_records": 10, "batch_poll_s": 0.02,
        "chunk_size": 8, **given,
    }
    return build_settings(values)


def claude_calls(server) -> int:
    return sum(n for model, n in server.counters.requests.items() if "anthropic" in model)


def start(config, source, run_id):
    """Open a run up to its plan; the on-demand access check done, the counters reset after it."""
    run = open_run(config, str(source), run_id)
    plan = run.plan(run.load_catalog())
    run.check_access(plan)
    return run, plan


def finish(run, plan, *, staged=(), **batch_options):
    batch = run.run_batch(run.batch_items(plan), sleep=lambda s: None, **batch_options)
    chunks = [*staged, *batch.staged]
    versions = run.commit(chunks, plan, batch=batch)
    return run.summary(plan, chunks, versions, batch=batch)


def test_a_batch_run_commits_every_image_once_through_jobs_at_half_the_price(server, catalog, tmp_path):
    config = settings(tmp_path)
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    assert run.chunks(plan) == [] and len(run.batch_items(plan)) == IMAGES
    assert all(item.content_sha256 for item in plan.items), "a run that may use jobs hashes every image (record ids)"
    progress = []
    with run:
        summary = finish(run, plan, on_progress=progress.append)
    assert claude_calls(server) == 0 and server.counters.total == 0, "no on-demand call for any image"
    assert len(server.batch.jobs) == 2 and server.batch.requests["create"] == 2
    rows = Dataset(config.dataset).read_assets()
    assert sorted(rows["image_id"]) == sorted(f"img{i:03d}.png" for i in range(IMAGES))
    assert rows["image_id"].is_unique and set(rows["embedding_dim"]) == {256}
    assert (summary.enriched, summary.failed, summary.batch_images, summary.batch_jobs) == (IMAGES, 0, IMAGES, 2)
    assert summary.invocation == "batch" and summary.batch_on_demand == 0
    assert summary.batch_cost_usd == pytest.approx(summary.batch_on_demand_cost_usd / 2)
    assert summary.estimated_cost_usd == pytest.approx(summary.batch_cost_usd) and summary.batch_cost_usd > 0
    assert progress and progress[-1].done == 2 and progress[-1].percent == 100.0
    metadata = Dataset(config.dataset).history()[0]  # the commit says which invocation made its rows
    assert metadata["invocation"] == "batch" and metadata["batch_images"] == str(IMAGES)
    assert sorted(json.loads(metadata["batch_jobs"])) == sorted(server.batch.jobs)
    # The jobs' record is gone once their rows are committed; nothing else is left staged.
    staging = tmp_path / "ds" / "_staging"
    assert not list(staging.rglob("*.json")) and not list(staging.glob("*.parquet"))
    # The next run reuses every row: no job, no call.
    run, plan = start(config, catalog, "run-2")
    with run:
        assert plan.items == [] and finish(run, plan).enriched == 0
    assert len(server.batch.jobs) == 2


def test_a_run_killed_while_its_jobs_run_is_finished_by_the_next_without_a_second_job(server, catalog, tmp_path):
    server.batch.plan = replace(FAST, in_progress_seconds=0.5)
    config = settings(tmp_path)
    run, plan = start(config, catalog, "run-1")
    with run:  # submits, records, and "dies" before collecting (as --no-wait leaves it)
        left = run.run_batch(run.batch_items(plan), wait=False)
    assert left.waiting == IMAGES and left.submitted == 2 and left.staged == ()
    assert {job.status for job in server.batch.jobs.values()} & {"Submitted", "Validating", "Scheduled", "InProgress"}
    records = list((tmp_path / "ds" / "_staging" / "batch").glob("*.json"))
    assert len(records) == 1 and len(json.loads(records[0].read_text())["jobs"]) == 2
    server.counters.reset()

    run, plan = start(config, catalog, "run-2")
    with run:
        summary = finish(run, plan)
    assert server.batch.requests["create"] == 2 and len(server.batch.jobs) == 2, "no second job"
    assert claude_calls(server) == 1  # run-2's access check only
    assert summary.enriched == IMAGES and summary.batch_images == IMAGES and summary.batch_jobs == 2
    rows = Dataset(config.dataset).read_assets()
    assert len(rows) == IMAGES
    for row in rows.itertuples():  # run-2 never prepared these images: their facts are read again
        path = catalog / row.image_id
        assert (row.width, row.height) == Image.open(path).size and row.media_type == "image/png"
        assert row.size_bytes == path.stat().st_size
    assert not list((tmp_path / "ds" / "_staging" / "batch").glob("*.json"))


@pytest.mark.parametrize("partial_job", [0, 1])  # jobs are created in (model, kind) order: Titan's, then Claude's
def test_a_partially_completed_jobs_missing_records_are_finished_on_demand(server, catalog, tmp_path, partial_job):
    plans = [FAST, FAST]
    plans[partial_job] = replace(FAST, outcome="PartiallyCompleted", partial_share=0.5, seed=4)
    for plan in plans:
        server.batch.queue_plan(plan)
    config = settings(tmp_path)
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    statuses = sorted(job.status for job in server.batch.jobs.values())
    assert statuses == ["Completed", "PartiallyCompleted"]
    missing = IMAGES - IMAGES // 2
    partial = next(job for job in server.batch.jobs.values() if job.status == "PartiallyCompleted")
    assert len(partial.record_outcomes) == IMAGES // 2
    assert summary.enriched == IMAGES and summary.failed == 0 and summary.invocation == "batch+on-demand"
    assert summary.batch_on_demand == missing
    if "describe" in partial.job_name:  # a missing description: described and embedded on demand
        assert claude_calls(server) == missing
    else:  # a missing vector: embedded on demand, the job's description kept (not paid again)
        assert claude_calls(server) == 0 and server.counters.requests["amazon.titan-embed-image-v1"] == missing
    assert len(Dataset(config.dataset).read_assets()) == IMAGES


def test_record_errors_become_failure_rows_with_fallback_fail(server, catalog, tmp_path):
    server.batch.plan = replace(FAST, record_error_rate=0.25, seed=9)
    config = settings(tmp_path, batch_fallback="fail")
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert server.counters.total == 0
    failures = Dataset(config.dataset).read_failures()
    assert summary.failed == len(failures) > 0 and summary.enriched + summary.failed == IMAGES
    assert set(failures["stage"]) <= {"describe", "embed"} and not failures["permanent"].any()
    assert all("batch job" in m for m in failures["message"])


def test_auto_sends_too_few_records_on_demand(server, catalog, tmp_path):
    config = settings(tmp_path, invocation="auto", batch_min_records=IMAGES + 1)
    run, plan = start(config, catalog, "run-1")
    with run:
        assert run.batch_items(plan) == [] and sum(len(c) for c in run.chunks(plan)) == IMAGES
        staged = [run.run_chunk(items) for items in run.chunks(plan)]
        summary = finish(run, plan, staged=staged)
    assert server.batch.jobs == {} and server.batch.requests["create"] == 0
    assert summary.enriched == IMAGES and summary.invocation == "on-demand" and summary.batch_cost_usd is None
    assert "Contents" not in server.batch.s3.list_objects_v2(Bucket="media", Prefix="batch/")


def test_batch_mode_below_the_minimum_calls_on_demand_without_writing_records(server, catalog, tmp_path):
    config = settings(tmp_path, batch_min_records=IMAGES + 1, batch_max_records_per_job=100)
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert server.batch.jobs == {} and summary.enriched == IMAGES and summary.batch_on_demand == IMAGES
    assert claude_calls(server) == IMAGES


def test_a_local_dataset_without_a_batch_location_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="MEDIA_ENRICH_BATCH_S3_URI"):
        settings(tmp_path, batch_s3_uri=None)
    with pytest.raises(ConfigError, match="batch_role_arn|MEDIA_ENRICH_BATCH_ROLE_ARN"):
        settings(tmp_path, batch_role_arn=None)
    with pytest.raises(ConfigError, match="bedrock provider"):
        settings(tmp_path, provider="local")
    assert settings(tmp_path, provider="local", invocation="auto").invocation == "auto"  # on demand there
    assert build_settings({"dataset": "s3://media/ds", "provider": "bedrock", "invocation": "batch",
                           "batch_role_arn": ROLE}).batch_location_uri == "s3://media/ds/_batch"
    assert not (tmp_path / "ds").exists()


def test_auto_without_batch_set_up_is_on_demand(server, catalog, tmp_path, caplog):
    config = settings(tmp_path, invocation="auto", batch_s3_uri=None, batch_role_arn=None)
    run, plan = start(config, catalog, "run-1")
    with run:
        assert run.batch_items(plan) == [] and sum(len(c) for c in run.chunks(plan)) == IMAGES
    assert "not set up (MEDIA_ENRICH_BATCH_ROLE_ARN)" in caplog.text


def test_cli_run_with_invocation_batch_enriches_through_jobs(cli, prefect_server, server, catalog, tmp_path):
    """`media-enrich run SOURCE --invocation batch` end to end (a Prefect server, the flow, its batch
    task); the Prefect UI shows the jobs' progress as a progress artifact."""
    done = cli(
        "run", str(catalog), "--provider", "bedrock", "--dataset", str(tmp_path / "ds"), "--embedding-dim", "256",
        "--invocation", "batch", cwd=tmp_path, timeout=300,
        MEDIA_ENRICH_BATCH_S3_URI="s3://media/batch", MEDIA_ENRICH_BATCH_ROLE_ARN=ROLE,
        MEDIA_ENRICH_BATCH_MIN_RECORDS="10", MEDIA_ENRICH_BATCH_POLL_S="0.05",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "invocation" in done.stdout and "batch" in done.stdout
    assert len(server.batch.jobs) == 2 and claude_calls(server) == 1  # the access check only
    rows = Dataset(str(tmp_path / "ds")).read_assets()
    assert len(rows) == IMAGES and rows["image_id"].is_unique
    history = json.dumps(Dataset(str(tmp_path / "ds")).history(), default=str)
    assert "invocation" in history
    query = json.dumps({"artifacts": {"type": {"any_": ["progress"]}}}).encode()
    request = urllib.request.Request(
        f"{prefect_server}/artifacts/filter", data=query, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        artifacts = json.loads(response.read())
    from media_enrichment.report import artifact_key

    key = artifact_key("batch-progress", str(tmp_path / "ds"))
    assert [a["data"] for a in artifacts if a["key"] == key] == [100.0], "records processed of total, in the UI"


def test_collect_follows_recorded_jobs_only_and_submits_nothing(server, catalog, tmp_path):
    config = settings(tmp_path)
    run, plan = start(config, catalog, "run-0")
    with run:  # nothing recorded: a collecting run submits nothing and leaves the images waiting
        nothing = run.run_batch(run.batch_items(plan), submit=False)
    assert server.batch.jobs == {} and nothing.waiting == IMAGES and nothing.staged == ()
    run, plan = start(config, catalog, "run-1")
    with run:
        run.run_batch(run.batch_items(plan)[:12], wait=False)  # records for 12 images only
    record = json.loads(next((tmp_path / "ds" / "_staging" / "batch").glob("*.json")).read_text())
    assert record["source"] == str(catalog)
    run, plan = start(config, catalog, "run-2")
    with run:
        summary = finish(run, plan, submit=False)
    assert len(server.batch.jobs) == 2 and server.batch.requests["create"] == 2
    assert (summary.enriched, summary.deferred, summary.batch_images) == (12, 12, 12)
    assert "wait for batch jobs" in summary.stopped


def test_cli_no_wait_then_collect(cli, server, catalog, tmp_path):
    """`run --no-wait` submits and records the jobs and returns; `collect` follows them and commits."""
    server.batch.plan = replace(FAST, in_progress_seconds=1.0)
    env = {
        "MEDIA_ENRICH_BATCH_S3_URI": "s3://media/batch", "MEDIA_ENRICH_BATCH_ROLE_ARN": ROLE,
        "MEDIA_ENRICH_BATCH_MIN_RECORDS": "10", "MEDIA_ENRICH_BATCH_POLL_S": "0.05", "MEDIA_ENRICH_EMBEDDING_DIM": "256",
    }
    dataset = str(tmp_path / "ds")
    first = cli("run", str(catalog), "--provider", "bedrock", "-d", dataset, "--invocation", "batch", "--no-wait",
                cwd=tmp_path, timeout=300, **env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wait for batch jobs" in first.stdout and len(server.batch.jobs) == 2
    assert Dataset(dataset).read_assets().empty
    done = cli("collect", "-d", dataset, cwd=tmp_path, timeout=300, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(server.batch.jobs) == 2 and server.batch.requests["create"] == 2
    assert len(Dataset(dataset).read_assets()) == IMAGES
    assert "No batch jobs recorded" in cli("collect", "-d", dataset, cwd=tmp_path, timeout=120, **env).stdout


def test_batch_prices_are_half_of_on_demand_and_a_price_file_may_set_them(tmp_path):
    from media_enrichment.cost import (
        DEFAULT_PRICES,
        batch_price_for,
        load_prices,
        price_for,
        run_cost,
    )

    for model in ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                  "amazon.titan-embed-image-v1"):
        on_demand, batch = price_for(model, DEFAULT_PRICES), batch_price_for(model, DEFAULT_PRICES)
        assert batch.input_per_mtok == pytest.approx(on_demand.input_per_mtok / 2)
        assert batch.output_per_mtok == pytest.approx(on_demand.output_per_mtok / 2)
        assert batch.per_image == pytest.approx(on_demand.per_image / 2)
    assert batch_price_for("anthropic.claude-sonnet-4-20250514-v1:0", DEFAULT_PRICES) is None  # not priced: unknown
    work = {"enrichment_model": "us.anthropic.claude-haiku-4-5-20251001-v1:0", "embedding_model": "amazon.titan-embed-image-v1",
            "input_tokens": 1_000_000, "output_tokens": 200_000, "images": 1000, "prices": DEFAULT_PRICES}
    assert run_cost(**work, batch=True) == pytest.approx(run_cost(**work) / 2)
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"batch:anthropic.claude-sonnet-4": {"input_per_mtok": 1.5, "output_per_mtok": 7.5}}))
    assert batch_price_for("us.anthropic.claude-sonnet-4-20250514-v1:0", load_prices(file)).input_per_mtok == 1.5


def test_an_embedder_batch_cannot_call_embeds_on_demand_keeping_the_batch_descriptions(server, catalog, tmp_path):
    config = settings(tmp_path, embedder_model_id="amazon.nova-2-multimodal-embeddings-v1:0", embedding_dim=256)
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert [job.model_id for job in server.batch.jobs.values()] == [run.versions.enrichment_model]  # Claude's only
    assert claude_calls(server) == 0 and server.counters.requests["amazon.nova-2-multimodal-embeddings-v1:0"] == IMAGES
    assert (summary.enriched, summary.batch_images, summary.batch_on_demand) == (IMAGES, IMAGES, IMAGES)


@pytest.mark.parametrize("outcome", ["Failed", "Expired"])
def test_a_failed_or_expired_job_goes_on_demand_and_with_fallback_fail_to_failure_rows(server, catalog, tmp_path, outcome):
    server.batch.queue_plan(FAST)  # Titan's job completes
    server.batch.queue_plan(replace(FAST, outcome=outcome))  # Claude's does not
    run, plan = start(settings(tmp_path), catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert summary.enriched == IMAGES and summary.batch_on_demand == IMAGES and summary.batch_images == 0
    assert claude_calls(server) == IMAGES
    # With fallback fail: failure rows. (The same records again: Titan's completed job answers them,
    # Claude's are submitted again, since their token names the ended job, and that job ends too.)
    server.batch.plan = replace(FAST, outcome=outcome)
    run, plan = start(settings(tmp_path / "other", batch_fallback="fail"), catalog, "run-2")
    with run:
        summary = finish(run, plan)
    failures = Dataset(str(tmp_path / "other" / "ds")).read_failures()
    assert summary.failed == IMAGES and set(failures["stage"]) == {"describe"}
    assert all(f"Batch{outcome}" == code for code in failures["error_type"])


def test_an_unusable_batch_answer_gets_its_corrective_turn_on_demand_not_the_first_turn_again(server, catalog, tmp_path):
    config = settings(tmp_path, max_output_tokens=64)  # every batch answer is cut short at 64 tokens
    run, plan = start(config, catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    claude = [r for r in server.counters.log if "anthropic" in r.model_id]
    corrected = summary.batch_on_demand
    assert summary.enriched == IMAGES and summary.failed == 0 and corrected > IMAGES // 2
    assert summary.batch_images + corrected == IMAGES
    assert len(claude) >= corrected and {r.turns for r in claude} == {3}, "a corrective turn, never the first again"
    assert server.counters.requests["amazon.titan-embed-image-v1"] == 0, "the jobs' vectors are kept"
    rows = Dataset(config.dataset).read_assets()
    # A corrected row's tokens are the batch answer's and the corrective turn's.
    assert rows["output_tokens"].sum() > server.counters.output_tokens


def test_an_s3_dataset_keeps_batch_files_and_records_under_its_own_prefix(server, s3, catalog, tmp_path, aws_env):
    url = os.environ["AWS_ENDPOINT_URL_S3"]  # delta-rs and pyarrow reach moto too
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
                       "AWS_REGION": "us-east-1"}.items():
        aws_env.setenv(key, value)
    config = settings(tmp_path, dataset="s3://media/ds", batch_s3_uri=None)
    assert config.batch_location_uri == "s3://media/ds/_batch"
    run, plan = start(config, catalog, "run-1")
    with run:
        run.run_batch(run.batch_items(plan), wait=False)

    def keys(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix=prefix).get("Contents", [])]

    assert keys("ds/_batch/input/") and [k for k in keys("ds/_staging/batch/") if k.endswith(".json")]
    run, plan = start(config, catalog, "run-2")
    with run:
        summary = finish(run, plan)
    assert summary.enriched == IMAGES and len(server.batch.jobs) == 2 and server.batch.requests["create"] == 2
    assert [k for k in keys("ds/_staging/batch/") if k.endswith(".json")] == []
    assert len(Dataset("s3://media/ds").read_assets()) == IMAGES


def _api(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_cli_backfill_with_invocation_batch_through_the_served_deployment(cli, prefect_server, server, catalog, tmp_path):
    """`media-enrich backfill SOURCE --batch b1 --invocation batch`: the served backfill deployment's run
    enriches the batch through two batch jobs (the issue's "done when")."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    manifest = tmp_path / "batches.csv"
    names = sorted(p.name for p in catalog.iterdir())
    manifest.write_text("image_id,path,batch\n" + "".join(f"{n},images/{n},b1\n" for n in names))
    dataset = tmp_path / "ds"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "home"), COLUMNS="200",
        MEDIA_ENRICH_PROVIDER="bedrock", MEDIA_ENRICH_EMBEDDING_DIM="256", MEDIA_ENRICH_BATCH_S3_URI="s3://media/batch",
        MEDIA_ENRICH_BATCH_ROLE_ARN=ROLE, MEDIA_ENRICH_BATCH_MIN_RECORDS="10", MEDIA_ENRICH_BATCH_POLL_S="0.05",
    )
    served = subprocess.Popen(
        [sys.executable, "-m", "media_enrichment_prefect.cli", "serve", "--file", str(repo / "deployments" / "prefect.yaml"),
         "--dataset", str(dataset)],
        env=env, cwd=tmp_path, stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        def registered_here() -> bool:  # by this serve process (another test may have served it before)
            found = _api(f"{prefect_server}/deployments/name/enrich-catalog/backfill")
            return found is not None and found["parameters"].get("dataset") == str(dataset)

        while not registered_here():
            assert served.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the deployments were not registered"
            time.sleep(0.5)
        done = cli("backfill", str(manifest), "-b", "b1", "-d", str(dataset), "--invocation", "batch", cwd=tmp_path,
                   timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        (run_id,) = re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", done.stdout)
        deadline = time.monotonic() + 240
        while True:
            state = ((_api(f"{prefect_server}/flow_runs/{run_id}") or {}).get("state") or {}).get("type")
            if state == "COMPLETED":
                break
            assert state not in ("FAILED", "CRASHED"), (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the backfill run did not finish: {state}"
            time.sleep(1)
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=30)
    assert len(server.batch.jobs) == 2 and claude_calls(server) == 1  # the access check only
    rows = Dataset(str(dataset)).read_assets()
    assert len(rows) == IMAGES and set(rows["batch"]) == {"b1"}
    assert Dataset(str(dataset)).history()[0]["invocation"] == "batch"


def test_records_of_a_job_that_failed_in_an_earlier_run_are_submitted_again_not_answered_by_it(server, catalog, tmp_path):
    server.batch.queue_plan(FAST)  # Titan's job completes
    server.batch.queue_plan(replace(FAST, outcome="Failed"))  # Claude's fails
    config = settings(tmp_path, batch_fallback="fail")
    run, plan = start(config, catalog, "run-1")
    with run:
        assert finish(run, plan).failed == IMAGES
    assert len(server.batch.jobs) == 2
    # The next run tries the failure rows again: the same records, whose token names the failed job.
    run, plan = start(config, catalog, "run-2")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert summary.enriched == IMAGES and summary.failed == 0 and summary.batch_images == IMAGES
    assert len(server.batch.jobs) == 3, "Claude's records again as a new job; Titan's completed job answered again"
    assert sorted(job.status for job in server.batch.jobs.values()) == ["Completed", "Completed", "Failed"]
    assert server.counters.total == 0, "no on-demand call"


def test_a_job_the_service_refuses_as_too_small_goes_on_demand(server, catalog, tmp_path, caplog):
    server.batch.plan = replace(FAST, min_records=100)  # the model's quota is higher than the setting
    run, plan = start(settings(tmp_path), catalog, "run-1")
    server.counters.reset()
    with run:
        summary = finish(run, plan)
    assert server.batch.jobs == {} and server.batch.requests["create"] == 2
    assert summary.enriched == IMAGES and summary.batch_on_demand == IMAGES and summary.invocation == "on-demand"
    assert claude_calls(server) == IMAGES and "MEDIA_ENRICH_BATCH_MIN_RECORDS" in caplog.text


def test_throttled_job_creation_is_retried_and_is_one_job(server, catalog, tmp_path):
    server.batch.plan = replace(FAST, throttle_creates=6)  # more than botocore's own attempts
    run, plan = start(settings(tmp_path, bedrock_max_attempts=2, batch_poll_s=0.01), catalog, "run-1")
    with run:
        summary = finish(run, plan)
    assert len(server.batch.jobs) == 2 and summary.batch_images == IMAGES
