"""The library's batch pieces end to end: records, jobs and results against moto's S3 and the test server."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
from dataclasses import replace

import boto3
import numpy as np
import pytest
from botocore.config import Config
from PIL import Image

from media_enrichment.batch import (
    DESCRIBE,
    EMBED,
    BatchLocation,
    BatchQuotas,
    BatchRecord,
    BatchRun,
    BatchTooSmallError,
    JobSpec,
    RecordTooLargeError,
    describe_record,
    embed_record,
    follow,
    read_results,
    split_jobs,
    stop_job,
    submit_job,
    wait,
)
from media_enrichment.batch.records import make_record, record_id
from media_enrichment.batch.results import ERROR, INVALID, MISSING, OK
from media_enrichment.errors import ConfigError, RetryableProviderError
from media_enrichment.images import (
    CLAUDE_LIMITS,
    TITAN_LIMITS,
    PreparedImage,
    prepare_images,
)
from media_enrichment.providers.bedrock.describer import BedrockDescriber
from media_enrichment.providers.bedrock.embedders import BedrockEmbedder
from media_enrichment.testing.batch import BatchPlan
from tests.helpers import batch_bedrock_server

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
TITAN = "amazon.titan-embed-image-v1"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
LOCATION = BatchLocation.from_uri("s3://media/batch/run-1")
FAST = BatchPlan(state_seconds=0.02, in_progress_seconds=0.02, min_records=100)
QUOTAS = BatchQuotas(min_records=100, max_records_per_file=50)


@pytest.fixture
def server(s3, aws_env):
    """The Bedrock test server (runtime and control plane), its batch jobs on moto's S3."""
    with batch_bedrock_server(aws_env, FAST) as srv:
        yield srv


@pytest.fixture
def clients(server):
    config = Config(retries={"mode": "standard", "total_max_attempts": 2})
    return boto3.client("bedrock", config=config), boto3.client("bedrock-runtime", config=config)


@pytest.fixture(scope="module")
def images() -> list[tuple[str, str, PreparedImage, PreparedImage]]:
    """120 small PNGs, prepared for Claude and Titan: ``(image_id, sha256, for_claude, for_titan)``."""
    out = []
    rng = np.random.default_rng(7)
    for i in range(120):
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.integers(-25, 25, (18 + i % 7, 30 + i % 11, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        data = buffer.getvalue()
        _, (claude, titan) = prepare_images(data, [CLAUDE_LIMITS, TITAN_LIMITS])
        out.append((f"img/{i:03d}.png", hashlib.sha256(data).hexdigest(), claude, titan))
    return out


def providers(runtime) -> tuple[BedrockDescriber, BedrockEmbedder]:
    return BedrockDescriber(runtime, model_id=CLAUDE, max_tokens=700), BedrockEmbedder(runtime, dim=256)


def build(images, describer, embedder) -> list[BatchRecord]:
    records = [describe_record(describer, image_id, sha, claude) for image_id, sha, claude, _ in images]
    records += [embed_record(embedder, image_id, sha, titan) for image_id, sha, _, titan in images]
    return records


def fake_record(n: int, size: int = 100, model: str = TITAN, kind: str = EMBED) -> BatchRecord:
    body = {"inputText": "x" * max(1, size - 60)}
    return make_record(f"id{n}", f"{n:064x}", kind=kind, model_id=model, version="v", body=body)


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


def test_records_go_through_batch_and_come_back_equal_to_on_demand(server, clients, s3, images):
    bedrock, runtime = clients
    describer, embedder = providers(runtime)
    split = split_jobs(build(images, describer, embedder), quotas=QUOTAS)
    assert split.below_minimum == ()
    assert sorted((job.kind, job.model_id, job.record_count, len(job.files)) for job in split.jobs) == [
        (DESCRIBE, CLAUDE, 120, 3), (EMBED, TITAN, 120, 3),
    ]
    run = BatchRun(run_id="run-1")
    for spec in split.jobs:
        run.add(submit_job(bedrock, s3, spec, location=LOCATION, role_arn=ROLE, min_records=QUOTAS.min_records))
    assert len(server.batch.jobs) == 2
    # The record of the run survives JSON, and is all a later run needs to collect the results.
    run = BatchRun.from_json(run.to_json())
    by_kind = {job.kind: job for job in run.jobs.values()}
    for job in run.jobs.values():
        state = wait(bedrock, job, poll_seconds=0.02, timeout_seconds=20)
        assert state.status == "Completed" and (state.total, state.success, state.errors) == (120, 120, 0)
        assert job.input_uri == f"s3://media/batch/run-1/input/{job.job_name}/"
    server.counters.reset()

    described = read_results(s3, by_kind[DESCRIBE])
    embedded = read_results(s3, by_kind[EMBED], embedder=embedder)
    for results in (described, embedded):
        assert len(results.records) == 120 and results.counts()[OK] == 120
        assert not results.unexpected and not results.duplicates and not results.unreadable
        assert results.manifest is not None and results.manifest.success == 120
    assert described.manifest.input_tokens == sum(r.input_tokens for r in described.records.values())

    by_image_d = {r.image_id: r for r in described.records.values()}
    by_image_e = {r.image_id: r for r in embedded.records.values()}
    assert set(by_image_d) == set(by_image_e) == {image_id for image_id, *_ in images}
    for image_id, sha, claude, titan in images:
        on_demand = describer.describe(claude)
        assert by_image_d[image_id].metadata == on_demand.metadata
        assert by_image_d[image_id].content_sha256 == sha
        assert (by_image_d[image_id].input_tokens, by_image_d[image_id].output_tokens) == (
            on_demand.input_tokens, on_demand.output_tokens,
        )
        np.testing.assert_array_equal(by_image_e[image_id].vector, embedder.embed_image(titan))
    assert server.counters.total == 240  # one on-demand call per image and model: one turn each


def test_the_same_records_resubmitted_are_the_same_job(server, clients, s3, images):
    bedrock, runtime = clients
    describer, _ = providers(runtime)
    records = [describe_record(describer, i, sha, claude) for i, sha, claude, _ in images]
    (spec,) = split_jobs(records, quotas=QUOTAS).jobs
    first = submit_job(bedrock, s3, spec, location=LOCATION, role_arn=ROLE)
    # A later run: new providers, the records in another order; nothing else changed.
    describer2, _ = providers(runtime)
    again = [describe_record(describer2, i, sha, claude) for i, sha, claude, _ in images]
    random.Random(3).shuffle(again)
    (spec2,) = split_jobs(again, quotas=QUOTAS).jobs
    assert (spec2.job_name, spec2.client_request_token) == (spec.job_name, spec.client_request_token)
    second = submit_job(bedrock, s3, spec2, location=LOCATION, role_arn=ROLE)
    assert second.job_arn == first.job_arn and len(server.batch.jobs) == 1
    assert server.batch.requests["create"] == 2
    # The service forgot the token (or it expired): the name finds the same job.
    server.batch._by_token.clear()
    third = submit_job(bedrock, s3, spec2, location=LOCATION, role_arn=ROLE)
    assert third.job_arn == first.job_arn and len(server.batch.jobs) == 1
    # Another prompt budget is another record and another job.
    other = BedrockDescriber(runtime, model_id=CLAUDE, max_tokens=900)
    (spec3,) = split_jobs([describe_record(other, i, sha, c) for i, sha, c, _ in images], quotas=QUOTAS).jobs
    assert spec3.job_name != spec.job_name
    assert {r.record_id for r in spec3.records}.isdisjoint(r.record_id for r in spec.records)
    assert follow(bedrock, first).job_arn == first.job_arn


def test_errors_and_a_partial_job_come_back_for_exactly_those_records(server, clients, s3, images):
    bedrock, runtime = clients
    _, embedder = providers(runtime)
    records = [embed_record(embedder, i, sha, titan) for i, sha, _, titan in images]
    (spec,) = split_jobs(records, quotas=QUOTAS).jobs
    server.batch.queue_plan(replace(FAST, record_error_rate=0.2, seed=11, outcome="PartiallyCompleted", partial_share=0.75))
    job = submit_job(bedrock, s3, spec, location=LOCATION, role_arn=ROLE)
    state = wait(bedrock, job, poll_seconds=0.02, timeout_seconds=20)
    assert state.status == "PartiallyCompleted" and state.readable and (state.total, state.processed) == (120, 90)
    results = read_results(s3, job, embedder=embedder)
    outcomes = server.batch.job(job.job_arn).record_outcomes
    assert set(results.records) == {r.record_id for r in spec.records}  # nothing dropped
    assert {r.record_id for r in results.with_status(ERROR)} == {rid for rid, o in outcomes.items() if o == "injected"}
    assert {r.record_id for r in results.with_status(MISSING)} == set(results.records) - set(outcomes)
    assert {r.record_id for r in results.with_status(OK)} == {rid for rid, o in outcomes.items() if o == "ok"}
    counts = results.counts()
    assert counts[MISSING] == 30 and counts[ERROR] > 0 and counts[OK] + counts[ERROR] == 90
    assert results.manifest.errors == counts[ERROR]
    error = results.with_status(ERROR)[0]
    assert error.error_code == "500" and error.vector is None and error.image_id.startswith("img/")


def test_an_answer_that_is_not_metadata_is_invalid_with_the_raw_kept(server, clients, s3, images):
    bedrock, runtime = clients
    describer = BedrockDescriber(runtime, model_id=CLAUDE, max_tokens=3)  # too few tokens: cut answers
    (spec,) = split_jobs([describe_record(describer, i, sha, c) for i, sha, c, _ in images], quotas=QUOTAS).jobs
    job = submit_job(bedrock, s3, spec, location=LOCATION, role_arn=ROLE)
    assert wait(bedrock, job, poll_seconds=0.02, timeout_seconds=20).status == "Completed"
    results = read_results(s3, job)
    assert results.counts()[INVALID] == 120
    sample = next(iter(results.records.values()))
    assert sample.error_code == "truncated" and sample.parsed is not None and sample.metadata is None


def test_below_the_minimum_raises_a_typed_error_locally_and_from_the_service(server, clients, s3, images):
    bedrock, runtime = clients
    _, embedder = providers(runtime)
    records = [embed_record(embedder, i, sha, titan) for i, sha, _, titan in images[:60]]
    split = split_jobs(records, quotas=QUOTAS)
    assert split.jobs == () and len(split.below_minimum) == 60  # left for on-demand calls
    small = JobSpec(TITAN, EMBED, (tuple(records),))
    with pytest.raises(BatchTooSmallError) as local:
        submit_job(bedrock, s3, small, location=LOCATION, role_arn=ROLE, min_records=100)
    assert (local.value.count, local.value.minimum) == (60, 100)
    assert "Contents" not in s3.list_objects_v2(Bucket="media", Prefix="batch/")  # nothing written
    # A model whose quota is higher than we were told: the service refuses the job.
    server.batch.plan = replace(FAST, min_records=1000)
    with pytest.raises(BatchTooSmallError, match="minimum number of records"):
        submit_job(bedrock, s3, small, location=LOCATION, role_arn=ROLE, min_records=1)
    assert server.batch.jobs == {}


def test_throttled_creation_is_retryable_and_a_retry_is_the_same_job(server, s3, images, aws_env):
    runtime = boto3.client("bedrock-runtime")
    one_attempt = boto3.client("bedrock", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    _, embedder = providers(runtime)
    (spec,) = split_jobs([embed_record(embedder, i, sha, t) for i, sha, _, t in images], quotas=QUOTAS).jobs
    server.batch.plan = replace(FAST, throttle_creates=1)
    with pytest.raises(RetryableProviderError):
        submit_job(one_attempt, s3, spec, location=LOCATION, role_arn=ROLE)
    job = submit_job(one_attempt, s3, spec, location=LOCATION, role_arn=ROLE)
    assert len(server.batch.jobs) == 1
    stop_job(one_attempt, job)
    assert wait(one_attempt, job, poll_seconds=0.02, timeout_seconds=20).status == "Stopped"
    results = read_results(s3, job, embedder=embedder)  # a stopped job: nothing processed, all missing
    assert len(results.records) == 120 and results.counts()[MISSING] + results.counts()[OK] == 120


# ---------------------------------------------------------------------------------------------
# Records and splitting
# ---------------------------------------------------------------------------------------------


def test_record_ids_are_stable_short_alphanumeric_and_change_with_what_changes_the_answer():
    rid = record_id("a.png", "ab" * 32, kind=DESCRIBE, model_id=CLAUDE, version="v1")
    assert re.fullmatch(r"[0-9A-Za-z]{11}", rid)
    assert rid == record_id("a.png", "ab" * 32, kind=DESCRIBE, model_id=CLAUDE, version="v1")
    variants = {
        record_id("b.png", "ab" * 32, kind=DESCRIBE, model_id=CLAUDE, version="v1"),
        record_id("a.png", "cd" * 32, kind=DESCRIBE, model_id=CLAUDE, version="v1"),
        record_id("a.png", "ab" * 32, kind=EMBED, model_id=CLAUDE, version="v1"),
        record_id("a.png", "ab" * 32, kind=DESCRIBE, model_id="eu." + CLAUDE[3:], version="v1"),
        record_id("a.png", "ab" * 32, kind=DESCRIBE, model_id=CLAUDE, version="v2"),
    }
    assert rid not in variants and len(variants) == 5
    ids = {record_id(f"{n}.png", "00" * 32, kind=EMBED, model_id=TITAN, version="dim=256") for n in range(20_000)}
    assert len(ids) == 20_000


def test_the_records_carry_the_on_demand_bodies(images):
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    describer, embedder = providers(runtime)
    image_id, sha, claude, titan = images[0]
    described = describe_record(describer, image_id, sha, claude)
    assert described.model_input == describer.request_body([describer.image_message(claude)])
    assert described.model_input["tool_choice"] == {"type": "tool", "name": "record_image_metadata"}
    embedded = embed_record(embedder, image_id, sha, titan)
    assert embedded.model_input == {"inputImage": titan.base64, "embeddingConfig": {"outputEmbeddingLength": 256}}
    line = json.loads(described.line)
    assert list(line) == ["recordId", "modelInput"] and described.line.endswith(b"\n")


def test_splitting_respects_every_quota_and_does_not_depend_on_order():
    records = [fake_record(n, size=100 + (n % 7) * 40) for n in range(1000)]
    quotas = BatchQuotas(min_records=100, max_records_per_file=90, max_bytes_per_file=9_000,
                         max_records_per_job=300, max_bytes_per_job=40_000)
    split = split_jobs(records, quotas=quotas)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert [j.job_name for j in split_jobs(shuffled, quotas=quotas).jobs] == [j.job_name for j in split.jobs]
    assert sum(j.record_count for j in split.jobs) + len(split.below_minimum) == 1000
    assert split.below_minimum == ()
    seen = set()
    for job in split.jobs:
        assert quotas.min_records <= job.record_count <= quotas.max_records_per_job
        assert job.size <= quotas.max_bytes_per_job
        assert len(job.job_name) <= 63 and re.fullmatch(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}", job.job_name)
        assert re.fullmatch(r"[0-9a-f]{64}", job.client_request_token)
        for file in job.files:
            assert len(file) <= quotas.max_records_per_file and sum(r.size for r in file) <= quotas.max_bytes_per_file
        ids = {r.record_id for r in job.records}
        assert ids.isdisjoint(seen)
        seen |= ids
    # Spread evenly over as few jobs as the quotas allow.
    tail = split_jobs([fake_record(n) for n in range(410)], quotas=BatchQuotas(min_records=100, max_records_per_job=200))
    assert [j.record_count for j in tail.jobs] == [137, 137, 136]
    # Duplicates count once; models never share a job.
    mixed = [fake_record(n) for n in range(150)] * 2 + [fake_record(n, model="amazon.titan-embed-image-v2") for n in range(120)]
    jobs = split_jobs(mixed, quotas=BatchQuotas(min_records=100)).jobs
    assert sorted(j.record_count for j in jobs) == [120, 150] and len({j.model_id for j in jobs}) == 2


def test_splitting_refuses_what_cannot_fit():
    with pytest.raises(RecordTooLargeError):
        split_jobs([fake_record(1, size=5_000)], quotas=BatchQuotas(min_records=1, max_bytes_per_file=1_000))
    with pytest.raises(ConfigError):
        split_jobs([fake_record(1)], name_prefix="bad prefix!")
    with pytest.raises(ConfigError):
        BatchQuotas(min_records=500, max_records_per_job=100)
    with pytest.raises(ValueError, match="two different records"):
        a = fake_record(1)
        split_jobs([a, BatchRecord(a.record_id, "other", a.content_sha256, a.kind, a.model_id, b"{}\n")])


def test_batch_run_record_round_trips_and_refuses_other_documents():
    run = BatchRun(run_id="r1")
    assert BatchRun.from_json(run.to_json()).jobs == {}
    with pytest.raises(ValueError):
        BatchRun.from_json('{"format": 99, "jobs": []}')
    with pytest.raises(ConfigError):
        BatchLocation.from_uri("/local/path")
    assert BatchLocation.from_uri("s3://media/").input_key("job", "part-00000.jsonl") == "input/job/part-00000.jsonl"
