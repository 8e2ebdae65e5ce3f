"""The test server's batch inference control plane, through real boto3 clients and moto's S3 server."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from PIL import Image

from media_enrichment.testing import BedrockServer
from media_enrichment.testing.batch import BatchPlan

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
TITAN = "amazon.titan-embed-image-v1"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
FAST = {"state_seconds": 0.02, "in_progress_seconds": 0.02}



@pytest.fixture
def bedrock(s3, aws_env):
    """``start(**plan)``: a test server whose batch jobs use moto's S3; returns (server, bedrock client)."""
    servers: list[BedrockServer] = []

    def start(*, attempts: int = 1, validate: bool = True, **plan) -> tuple[BedrockServer, object]:
        server = BedrockServer(max_lifetime=60, batch_plan=BatchPlan(**{**FAST, "min_records": 1, **plan})).start()
        servers.append(server)
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK", server.endpoint_url)
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        config = Config(retries={"mode": "standard", "total_max_attempts": attempts}, parameter_validation=validate)
        return server, boto3.client("bedrock", config=config)

    yield start
    for server in servers:
        server.batch.wait_idle(5)
        server.stop()


def png(seed: int, size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)).save(buffer, format="PNG")
    return buffer.getvalue()


def titan_body(data: bytes, dim: int = 256) -> dict:
    return {"inputImage": base64.b64encode(data).decode(), "embeddingConfig": {"outputEmbeddingLength": dim}}


def claude_body(data: bytes, media_type: str = "image/png") -> dict:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}},
                    {"type": "text", "text": "Describe."},
                ],
            }
        ],
        "tools": [{"name": "meta", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "tool", "name": "meta"},
    }


def put_records(s3, key: str, bodies: dict[str, dict]) -> None:
    lines = "".join(json.dumps({"recordId": rid, "modelInput": body}) + "\n" for rid, body in bodies.items())
    s3.put_object(Bucket="media", Key=key, Body=lines.encode())


def create(client, *, name="job1", model=TITAN, inp="s3://media/in/", out="s3://media/out/", **extra) -> str:
    return client.create_model_invocation_job(
        jobName=name, roleArn=ROLE, modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": inp, "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": out}}, **extra,
    )["jobArn"]


def follow(client, arn: str, timeout: float = 10.0) -> tuple[dict, list[str]]:
    """Poll until terminal; the last answer and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_model_invocation_job(jobIdentifier=arn)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"):
            return job, seen
        assert time.monotonic() < deadline, f"job stuck in {seen}"
        time.sleep(0.01)


def output_lines(s3, prefix: str) -> dict[str, dict]:
    lines: dict[str, dict] = {}
    for obj in s3.list_objects_v2(Bucket="media", Prefix=prefix).get("Contents", []):
        if obj["Key"].endswith(".jsonl.out"):
            for line in s3.get_object(Bucket="media", Key=obj["Key"])["Body"].read().splitlines():
                record = json.loads(line)
                assert record["recordId"] not in lines
                lines[record["recordId"]] = record
    return lines


def error_of(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


# ---------------------------------------------------------------------------------------------


def test_a_job_runs_through_its_states_and_answers_every_record_as_on_demand_does(bedrock, s3):
    server, client = bedrock()
    bodies = {f"REC{i:08d}": titan_body(png(i)) for i in range(6)}
    put_records(s3, "in/a.jsonl", dict(list(bodies.items())[:4]))
    put_records(s3, "in/sub/b.jsonl", dict(list(bodies.items())[4:]))
    s3.put_object(Bucket="media", Key="in/readme.txt", Body=b"not a jsonl file")
    arn = create(client, timeoutDurationInHours=48)
    job_id = arn.rsplit("/", 1)[-1]
    assert arn == f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"
    assert re.fullmatch(r"[a-z0-9]{12}", job_id)

    job, seen = follow(client, arn)
    assert seen[0] == "Submitted" and seen[-1] == "Completed"
    order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert [s for s in order if s in seen] == seen  # in order, none skipped backwards
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"], job["errorRecordCount"]) == (6, 6, 6, 0)
    assert job["jobName"] == "job1" and job["timeoutDurationInHours"] == 48 and job["modelInvocationType"] == "InvokeModel"
    assert job["endTime"] >= job["submitTime"]

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix="out/")["Contents"])
    assert keys == [f"out/{job_id}/a.jsonl.out", f"out/{job_id}/manifest.json.out", f"out/{job_id}/sub/b.jsonl.out"]
    manifest = json.loads(s3.get_object(Bucket="media", Key=f"out/{job_id}/manifest.json.out")["Body"].read())
    assert manifest == {
        "totalRecordCount": 6, "processedRecordCount": 6, "successRecordCount": 6, "errorRecordCount": 0,
        "inputTokenCount": 0, "outputTokenCount": 0,
    }
    lines = output_lines(s3, f"out/{job_id}/")
    assert set(lines) == set(bodies)
    runtime = boto3.client("bedrock-runtime")
    for rid, body in bodies.items():
        assert lines[rid]["modelInput"] == body and "error" not in lines[rid]
        on_demand = json.loads(runtime.invoke_model(modelId=TITAN, body=json.dumps(body))["body"].read())
        assert lines[rid]["modelOutput"] == on_demand
    assert server.counters.total == len(bodies)  # batch records are not InvokeModel requests


def test_claude_records_get_the_on_demand_answer_and_refused_bodies_an_error(bedrock, s3):
    server, client = bedrock()
    good = {f"GOOD{i:07d}": claude_body(png(i)) for i in range(3)}
    bad = {"BADTYPE0001": claude_body(png(9), media_type="image/jpeg"), "NOVERSION01": {"max_tokens": 5, "messages": []}}
    put_records(s3, "in/claude.jsonl", {**good, **bad})
    arn = create(client, model=CLAUDE)
    job, _ = follow(client, arn)
    assert job["status"] == "Completed"  # refused records do not fail the job
    assert (job["successRecordCount"], job["errorRecordCount"]) == (3, 2)
    lines = output_lines(s3, f"out/{arn.rsplit('/', 1)[-1]}/")
    runtime = boto3.client("bedrock-runtime")
    for rid, body in good.items():
        answer = lines[rid]["modelOutput"]
        on_demand = json.loads(runtime.invoke_model(modelId=CLAUDE, body=json.dumps(body))["body"].read())
        assert answer["content"][0]["input"] == on_demand["content"][0]["input"]
        assert answer["usage"] == on_demand["usage"] and answer["stop_reason"] == "tool_use"
    assert lines["BADTYPE0001"]["error"]["errorCode"] == 400
    assert "appears to be a image/png image" in lines["BADTYPE0001"]["error"]["errorMessage"]
    assert "anthropic_version" in lines["NOVERSION01"]["error"]["errorMessage"]
    manifest = json.loads(s3.get_object(Bucket="media", Key=f"out/{arn.rsplit('/', 1)[-1]}/manifest.json.out")["Body"].read())
    assert manifest["inputTokenCount"] == sum(lines[r]["modelOutput"]["usage"]["input_tokens"] for r in good)
    assert server.batch.job(arn).record_outcomes == {**dict.fromkeys(good, "ok"), **dict.fromkeys(bad, "error")}


def test_the_same_client_request_token_is_the_same_job(bedrock, s3):
    server, client = bedrock()
    put_records(s3, "in/a.jsonl", {"R0000000001": titan_body(png(1))})
    first = create(client, clientRequestToken="token-1")
    again = create(client, clientRequestToken="token-1")
    assert again == first and len(server.batch.jobs) == 1
    code, status, message = error_of(lambda: create(client, clientRequestToken="token-2"))
    assert (code, status) == ("ConflictException", 400) and "job1" in message
    other = create(client, name="job2", clientRequestToken="token-2")
    assert other != first and len(server.batch.jobs) == 2


def test_creation_is_validated_as_the_service_model_says(bedrock, s3):
    server, client = bedrock(validate=False)  # botocore's own checks off: the server's answer
    put_records(s3, "in/a.jsonl", {"R0000000001": titan_body(png(1))})
    cases = [
        ({"name": "x" * 64}, "length less than or equal to 63"),
        ({"name": "-starts-with-dash"}, "regular expression pattern"),
        ({"name": "has space"}, "regular expression pattern"),
        ({"timeoutDurationInHours": 23}, "between 24 and 168"),
        ({"timeoutDurationInHours": 169}, "between 24 and 168"),
        ({"inp": "https://media/in/"}, "s3InputDataConfig.s3Uri"),
        ({"out": "s3://Bad_Bucket/out/"}, "s3OutputDataConfig.s3Uri"),
        ({"clientRequestToken": "no spaces allowed"}, "clientRequestToken"),
    ]
    for kwargs, expected in cases:
        code, status, message = error_of(lambda kwargs=kwargs: create(client, **kwargs))
        assert (code, status) == ("ValidationException", 400), kwargs
        assert expected in message, (kwargs, message)
    code, status, message = error_of(
        lambda: client.create_model_invocation_job(
            jobName="j", roleArn="arn:aws:iam::123:user/me", modelId=TITAN,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://media/in/"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://media/out/"}},
        )
    )
    assert code == "ValidationException" and "roleArn" in message
    assert error_of(lambda: create(client, model="amazon.nothing-v1"))[:2] == ("ResourceNotFoundException", 404)
    assert error_of(lambda: create(client, model="anthropic.claude-3-haiku-20240307-v1:0"))[:2] == ("ResourceNotFoundException", 404)
    assert error_of(lambda: client.get_model_invocation_job(jobIdentifier="abc"))[:2] == ("ValidationException", 400)
    assert error_of(lambda: client.get_model_invocation_job(jobIdentifier="abcdefabcdef"))[:2] == ("ResourceNotFoundException", 404)
    assert server.batch.jobs == {}
    with pytest.raises(ParamValidationError):  # with botocore's checks on, an empty name never leaves
        create(bedrock(validate=True)[1], name="")


def test_below_the_minimum_is_refused_at_creation_or_fails_validation(bedrock, s3):
    put_records(s3, "in/a.jsonl", {f"R{i:010d}": titan_body(png(i)) for i in range(3)})
    server, client = bedrock(min_records=100)
    code, status, message = error_of(lambda: create(client))
    assert (code, status) == ("ValidationException", 400)
    assert "minimum number of records" in message and "(3)" in message and "(100)" in message
    assert server.batch.jobs == {}

    server, client = bedrock(min_records=100, refuse_small_at="validation")
    job, seen = follow(client, create(client))
    assert job["status"] == "Failed" and "minimum number of records" in job["message"]
    assert "InProgress" not in seen
    assert "Contents" not in s3.list_objects_v2(Bucket="media", Prefix="out/")


def test_injected_record_errors_fall_on_the_records_the_server_says(bedrock, s3):
    server, client = bedrock(record_error_rate=0.3, seed=5)
    bodies = {f"R{i:010d}": titan_body(png(i)) for i in range(40)}
    put_records(s3, "in/a.jsonl", bodies)
    arn = create(client)
    job, _ = follow(client, arn)
    assert job["status"] == "Completed"
    lines = output_lines(s3, f"out/{arn.rsplit('/', 1)[-1]}/")
    errored = {rid for rid, line in lines.items() if "error" in line}
    injected = {rid for rid, outcome in server.batch.job(arn).record_outcomes.items() if outcome == "injected"}
    assert errored == injected and 0 < len(errored) < 40
    assert job["errorRecordCount"] == len(errored) and job["successRecordCount"] == 40 - len(errored)
    assert all(lines[r]["error"] == {"errorCode": 500, "errorMessage": BatchPlan().record_error_message} for r in errored)


def test_partially_completed_failed_and_expired_jobs(bedrock, s3):
    bodies = {f"R{i:010d}": titan_body(png(i)) for i in range(10)}
    put_records(s3, "in/a.jsonl", bodies)
    server, client = bedrock(outcome="PartiallyCompleted", partial_share=0.6)
    arn = create(client)
    job, _ = follow(client, arn)
    assert job["status"] == "PartiallyCompleted" and (job["totalRecordCount"], job["processedRecordCount"]) == (10, 6)
    lines = output_lines(s3, f"out/{arn.rsplit('/', 1)[-1]}/")
    assert len(lines) == 6 and set(lines) == set(server.batch.job(arn).record_outcomes)

    _, client = bedrock(outcome="Failed", failure_message="boom")
    job, seen = follow(client, create(client, name="failing"))
    assert (job["status"], job["message"]) == ("Failed", "boom") and "InProgress" not in seen

    _, client = bedrock(outcome="Expired")
    job, seen = follow(client, create(client, name="late"))
    assert job["status"] == "Expired" and seen[-2] == "Scheduled"


def test_quotas_are_checked_at_validation(bedrock, s3):
    put_records(s3, "in/a.jsonl", {f"R{i:010d}": titan_body(png(i)) for i in range(5)})
    for plan, expected in (
        ({"max_records_per_file": 4}, "records per file"),
        ({"max_records_per_job": 4}, "records per job"),
        ({"max_file_bytes": 100}, "bytes per file"),
    ):
        _, client = bedrock(**plan)
        job, _ = follow(client, create(client))
        assert job["status"] == "Failed" and expected in job["message"], plan
    s3.put_object(Bucket="media", Key="bad/a.jsonl", Body=b'{"recordId": "x"}\n')
    _, client = bedrock(refuse_small_at="validation")
    job, _ = follow(client, create(client, inp="s3://media/bad/"))
    assert job["status"] == "Failed" and "modelInput" in job["message"]
    job, _ = follow(client, create(client, name="empty", inp="s3://media/nothing/"))
    assert job["status"] == "Failed" and "No .jsonl files" in job["message"]


def test_throttled_create_and_get_answer_429_and_retries_get_through(bedrock, s3):
    put_records(s3, "in/a.jsonl", {"R0000000001": titan_body(png(1))})
    server, client = bedrock(throttle_creates=1, throttle_gets=1)
    code, status, _ = error_of(lambda: create(client, clientRequestToken="t1"))
    assert (code, status) == ("ThrottlingException", 429) and server.batch.jobs == {}
    arn = create(client, clientRequestToken="t1")
    assert error_of(lambda: client.get_model_invocation_job(jobIdentifier=arn))[:2] == ("ThrottlingException", 429)
    assert follow(client, arn)[0]["status"] == "Completed"

    server, patient = bedrock(attempts=2, throttle_creates=1)
    arn = create(patient, name="retried")  # botocore retries with the same generated token
    assert len(server.batch.jobs) == 1 and server.batch.requests["create"] == 2
    assert server.batch.job(arn).client_request_token  # botocore filled one in


def test_list_filters_and_pages_and_stop(bedrock, s3):
    put_records(s3, "in/a.jsonl", {f"R{i:010d}": titan_body(png(i)) for i in range(3)})
    _, client = bedrock(state_seconds=3.0)  # all four still Submitted when listed, on a busy machine too
    arns = [create(client, name=f"backfill-{i}") for i in range(3)]
    other = create(client, name="nightly")
    names = [j["jobName"] for j in client.list_model_invocation_jobs(nameContains="backfill")["invocationJobSummaries"]]
    assert sorted(names) == ["backfill-0", "backfill-1", "backfill-2"]
    page = client.list_model_invocation_jobs(maxResults=2, sortOrder="Ascending")
    assert [j["jobName"] for j in page["invocationJobSummaries"]] == ["backfill-0", "backfill-1"]
    rest = client.list_model_invocation_jobs(maxResults=2, sortOrder="Ascending", nextToken=page["nextToken"])
    assert [j["jobName"] for j in rest["invocationJobSummaries"]] == ["backfill-2", "nightly"] and "nextToken" not in rest
    assert len(client.list_model_invocation_jobs(statusEquals="Submitted")["invocationJobSummaries"]) == 4

    client.stop_model_invocation_job(jobIdentifier=arns[0])
    assert client.get_model_invocation_job(jobIdentifier=arns[0])["status"] == "Stopping"
    job, _ = follow(client, arns[0])
    assert job["status"] == "Stopped"
    stopped = client.list_model_invocation_jobs(statusEquals="Stopped")["invocationJobSummaries"]
    assert [j["jobArn"] for j in stopped] == [arns[0]]
    assert error_of(lambda: client.stop_model_invocation_job(jobIdentifier=arns[0]))[:2] == ("ValidationException", 400)
    for arn in (*arns[1:], other):  # not left running behind the test
        client.stop_model_invocation_job(jobIdentifier=arn.rsplit("/", 1)[-1])
