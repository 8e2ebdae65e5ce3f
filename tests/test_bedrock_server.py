"""The Bedrock-compatible test server validates and fails the way the service does."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from PIL import Image

from media_enrichment.aws import bedrock_control_client, bedrock_runtime_client, make_session
from media_enrichment.config import Settings
from media_enrichment.testing import BedrockServer, FaultPlan

HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
CLAUDE = "us." + HAIKU_45
TITAN = "amazon.titan-embed-image-v1"


@pytest.fixture
def server(aws_env):
    with BedrockServer(max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        yield srv


def client(**overrides):
    values = dict(provider="bedrock", bedrock_max_attempts=1, bedrock_read_timeout=5.0)
    values.update(overrides)
    return bedrock_runtime_client(make_session(profile=None, region=None), settings=Settings(**values))


def encode(size=(32, 24), colour=(200, 30, 40), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def claude_body(data: bytes, media_type: str = "image/png", **extra) -> dict:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()},
                    },
                    {"type": "text", "text": "Describe."},
                ],
            }
        ],
        "tools": [{"name": "meta", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "tool", "name": "meta"},
    }
    body.update(extra)
    return body


def invoke(bedrock, model: str, body: dict) -> dict:
    response = bedrock.invoke_model(modelId=model, body=json.dumps(body))
    return json.loads(response["body"].read())


def error_of(bedrock, model: str, body: dict) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        invoke(bedrock, model, body)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


# ---------------------------------------------------------------------------------------------
# Titan
# ---------------------------------------------------------------------------------------------


def test_titan_rejects_an_unsupported_dimension(server):
    body = {"inputText": "hello", "embeddingConfig": {"outputEmbeddingLength": 512}}
    code, status, message = error_of(client(), TITAN, body)
    assert (code, status) == ("ValidationException", 400)
    assert "outputEmbeddingLength" in message and "512" in message


def test_titan_image_limits(server):
    bedrock = client()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    too_big = {"inputImage": b64(encode((2049, 16)))}
    assert error_of(bedrock, TITAN, too_big)[2] == "Image exceeds max pixels allowed."
    gif = {"inputImage": b64(encode(fmt="GIF"))}
    assert error_of(bedrock, TITAN, gif)[0] == "ValidationException"
    assert error_of(bedrock, TITAN, {"embeddingConfig": {"outputEmbeddingLength": 256}})[1] == 400
    assert error_of(bedrock, TITAN, {"inputText": "x", "normalize": True})[1] == 400


def test_titan_vectors_are_deterministic_unit_vectors_and_averaged_with_text(server):
    bedrock = client()
    image = base64.b64encode(encode(colour=(30, 200, 60))).decode()
    config = {"embeddingConfig": {"outputEmbeddingLength": 256}}
    a = invoke(bedrock, TITAN, {"inputImage": image, **config})
    b = invoke(bedrock, TITAN, {"inputImage": image, **config})
    both = invoke(bedrock, TITAN, {"inputImage": image, "inputText": "green", **config})
    default = invoke(bedrock, TITAN, {"inputText": "green"})
    assert a["embedding"] == b["embedding"] and len(a["embedding"]) == 256
    assert abs(np.linalg.norm(a["embedding"]) - 1) < 1e-5
    assert both["embedding"] != a["embedding"] and both["inputTextTokenCount"] > 0
    assert len(default["embedding"]) == 1024 and a["message"] is None


# ---------------------------------------------------------------------------------------------
# Claude
# ---------------------------------------------------------------------------------------------


def test_claude_answers_a_forced_tool_with_usage(server):
    data = encode((300, 150))
    answer = invoke(client(), CLAUDE, claude_body(data))
    (block,) = answer["content"]
    assert answer["stop_reason"] == "tool_use" and block["type"] == "tool_use" and block["name"] == "meta"
    assert "red" in block["input"]["keywords"]  # the dominant colour
    assert answer["usage"]["input_tokens"] >= 300 * 150 // 750
    assert answer["usage"]["output_tokens"] > 0
    assert server.counters.images[hashlib.sha256(data).hexdigest()] == 1
    assert server.counters.billed_images[(CLAUDE, hashlib.sha256(data).hexdigest())] == 1



def test_hostile_answers_are_huge_laced_nested_deterministic_and_counted(aws_env):
    def answers(seed: int) -> tuple[list[dict], list[str], dict]:
        with BedrockServer(max_lifetime=60, faults=FaultPlan(seed=seed, hostile_rate=1.0)) as srv:
            aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
            bedrock = client()
            got = [invoke(bedrock, CLAUDE, claude_body(encode(colour=(20 * i, 30, 40)))) for i in range(6)]
            return got, [r.detail for r in srv.counters.log], srv.counters.snapshot()

    first, details, snapshot = answers(9)
    again, details_again, _ = answers(9)
    assert details == details_again and all(d.startswith("hostile:") for d in details)
    strip = lambda a: [{k: v for k, v in b.items() if k != "id"} for b in a["content"]]
    assert [strip(a) for a in first] == [strip(a) for a in again], "deterministic from the plan's seed"
    assert snapshot["outcomes"] == {"hostile": 6} and len(snapshot["billed_images"]) == 6
    for answer in first:
        assert answer["stop_reason"] == "tool_use" and answer["usage"]["output_tokens"] <= 512
        tool = next(b for b in answer["content"] if b["type"] == "tool_use")
        data = tool["input"]
        if isinstance(data["title"], str):
            assert len(data["title"]) >= 100_000 and "\x00" in data["title"]
        assert len(data["description"]) >= 100_000 and len(data["keywords"]) >= 10_000
        assert "\x1b[2J" in data["keywords"] and any(isinstance(k, (dict, list)) for k in data["keywords"])
        assert any(isinstance(t, (dict, list)) for t in data["tags"])
        assert {"image_id", "run_id", "deep"} <= set(data)  # keys the schema does not have
        depth, value = 0, data["deep"]
        while isinstance(value, (dict, list)):
            value = value["deep"] if isinstance(value, dict) else value[0]
            depth += 1
        assert depth == 200
    names = {next(b for b in a["content"] if b["type"] == "tool_use")["name"] for a in first + answers(3)[0]}
    assert "meta" in names and names - {"meta"}, "some hostile answers name another tool"


def test_claude_validation_like_the_service(server):
    bedrock = client()
    png = encode()
    code, status, message = error_of(bedrock, CLAUDE, claude_body(png, "image/jpeg"))
    assert (code, status) == ("ValidationException", 400)
    assert message == (
        "The image was specified using the image/jpeg media type, but the image appears to be a image/png image"
    )
    assert "anthropic_version" in error_of(bedrock, CLAUDE, {**claude_body(png), "anthropic_version": None})[2]
    assert error_of(bedrock, CLAUDE, claude_body(png, anthropic_version="2023-06-01"))[1] == 400
    assert "8000" in error_of(bedrock, CLAUDE, claude_body(encode((8001, 4))))[2]
    oversize = claude_body(png)
    oversize["messages"][0]["content"][0]["source"]["data"] = "A" * (5 * 1024 * 1024 + 4)
    assert "5 MB" in error_of(bedrock, CLAUDE, oversize)[2]
    assert error_of(bedrock, CLAUDE, claude_body(png, tool_choice={"type": "tool", "name": "other"}))[1] == 400
    dangling = claude_body(png)
    dangling["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "meta", "input": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    assert "tool_result" in error_of(bedrock, CLAUDE, dangling)[2]
    empty_text = claude_body(png)
    empty_text["messages"][0]["content"][1]["text"] = ""
    assert "non-empty" in error_of(bedrock, CLAUDE, empty_text)[2]
    assert server.counters.outcomes == {"validation": 8}
    assert not server.counters.billed_images


def test_unknown_and_denied_models(aws_env):
    with BedrockServer(denied_models={HAIKU_45}, max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        bedrock = client()
        body = claude_body(encode())
        assert error_of(bedrock, "us." + HAIKU_45, body)[:2] == ("AccessDeniedException", 403)
        assert error_of(bedrock, "global." + HAIKU_45, body)[:2] == ("AccessDeniedException", 403)
        assert error_of(bedrock, "anthropic.claude-0-v0", body)[:2] == ("ResourceNotFoundException", 404)
        assert invoke(bedrock, "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", body)["stop_reason"] == "tool_use"


# ---------------------------------------------------------------------------------------------
# Service-like model rules: retired versions, inference profiles, sampling parameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ],
)
def test_retired_claude_versions_answer_end_of_life(server, model):
    code, status, message = error_of(client(), model, claude_body(encode()))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message.startswith("This model version has reached the end of its life")
    assert server.counters.outcomes == {"end_of_life": 1}
    assert not server.counters.billed_images


def test_claude_4_base_ids_need_an_inference_profile_and_profiles_are_served(server):
    bedrock = client()
    body = claude_body(encode())
    for base in (HAIKU_45, "anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"):
        code, status, message = error_of(bedrock, base, body)
        assert (code, status) == ("ValidationException", 400)
        assert message == (
            f"Invocation of model ID {base} with on-demand throughput isn\u2019t supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    foundation_arn = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_45}"
    assert error_of(bedrock, foundation_arn, body)[:2] == ("ValidationException", 400)
    profiles = [f"{geo}.{HAIKU_45}" for geo in ("us", "eu", "jp", "au", "global")]
    profiles.append(f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.{HAIKU_45}")
    for profile in profiles:
        assert invoke(bedrock, profile, body)["stop_reason"] == "tool_use", profile
    assert server.counters.outcomes == {"profile_required": 4, "ok": len(profiles)}


def test_claude_45_and_later_refuse_temperature_with_top_p(server):
    bedrock = client()
    both = claude_body(encode(), temperature=0.2, top_p=0.9)
    for model in (CLAUDE, "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-opus-4-1-20250805-v1:0"):
        code, status, message = error_of(bedrock, model, both)
        assert (code, status) == ("ValidationException", 400), model
        assert message == "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    assert invoke(bedrock, CLAUDE, claude_body(encode(), temperature=0.2))["stop_reason"] == "tool_use"
    assert invoke(bedrock, CLAUDE, claude_body(encode(), top_p=0.9))["stop_reason"] == "tool_use"
    assert invoke(bedrock, "us.anthropic.claude-sonnet-4-20250514-v1:0", both)["stop_reason"] == "tool_use"
    assert server.counters.outcomes == {"validation": 3, "ok": 3}


# ---------------------------------------------------------------------------------------------
# Control plane: GetFoundationModel
# ---------------------------------------------------------------------------------------------


def control(srv: BedrockServer, aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK", srv.endpoint_url)
    return bedrock_control_client(make_session(profile=None, region=None), settings=Settings())


def test_get_foundation_model_reports_the_lifecycle(aws_env):
    with BedrockServer(max_lifetime=60, legacy_models={"anthropic.claude-sonnet-4-5-20250929-v1:0": "2027-03-31"}) as srv:
        bedrock = control(srv, aws_env)
        active = bedrock.get_foundation_model(modelIdentifier=HAIKU_45)["modelDetails"]
        assert active["modelId"] == HAIKU_45 and active["modelLifecycle"]["status"] == "ACTIVE"
        assert active["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_45}"
        assert active["inferenceTypesSupported"] == ["INFERENCE_PROFILE"]

        legacy = bedrock.get_foundation_model(modelIdentifier="anthropic.claude-sonnet-4-5-20250929-v1:0")
        lifecycle = legacy["modelDetails"]["modelLifecycle"]
        assert lifecycle["status"] == "LEGACY"
        assert lifecycle["endOfLifeTime"].date().isoformat() == "2027-03-31"
        assert lifecycle["legacyTime"] < lifecycle["endOfLifeTime"]

        srv.mark_legacy(TITAN, "2027-06-30", extended_access_from="2027-04-01")
        titan = bedrock.get_foundation_model(modelIdentifier=TITAN)["modelDetails"]["modelLifecycle"]
        assert titan["status"] == "LEGACY" and titan["publicExtendedAccessTime"].date().isoformat() == "2027-04-01"

        for missing in ("us." + HAIKU_45, "anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-0-v0"):
            with pytest.raises(ClientError) as info:
                bedrock.get_foundation_model(modelIdentifier=missing)
            assert info.value.response["Error"]["Code"] == "ResourceNotFoundException", missing
        assert srv.foundation_model_requests[HAIKU_45] == 1 and sum(srv.foundation_model_requests.values()) == 6
        assert srv.counters.total == 0, "control-plane calls are not InvokeModel calls"


def test_get_foundation_model_can_be_refused(aws_env):
    with BedrockServer(max_lifetime=60, control_plane_denied=True) as srv:
        with pytest.raises(ClientError) as info:
            control(srv, aws_env).get_foundation_model(modelIdentifier=HAIKU_45)
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_errors_are_sent_the_way_bedrock_sends_them(server):
    request = urllib.request.Request(
        f"{server.endpoint_url}/model/{TITAN}/invoke",
        data=json.dumps({"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 7}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    with info.value as response:
        assert response.code == 400
        assert response.headers["x-amzn-ErrorType"] == (
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        )
        assert set(json.loads(response.read())) == {"message"}


# ---------------------------------------------------------------------------------------------
# Faults, quota, lifecycle
# ---------------------------------------------------------------------------------------------


def test_throttling_is_parsed_and_retried_by_botocore(aws_env):
    with BedrockServer(faults=FaultPlan(throttle_rate=1.0), max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        with pytest.raises(ClientError) as info:
            invoke(client(bedrock_max_attempts=2), TITAN, {"inputText": "x"})
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
        assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 1
        assert srv.counters.outcomes == {"throttled": 2}


def test_rpm_quota_throttles_per_model(aws_env):
    with BedrockServer(faults=FaultPlan(rpm_quota=2), max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        bedrock = client()
        invoke(bedrock, TITAN, {"inputText": "a"})
        invoke(bedrock, TITAN, {"inputText": "b"})
        assert error_of(bedrock, TITAN, {"inputText": "c"})[:2] == ("ThrottlingException", 429)
        invoke(bedrock, CLAUDE, claude_body(encode()))  # another model has its own quota
        assert srv.counters.outcomes == {"ok": 3, "quota": 1}


def test_a_stall_shorter_than_the_read_timeout_is_just_slow(aws_env):
    plan = FaultPlan(stall_rate=1.0, stall_seconds=0.3, latency={"titan": 0.1})
    with BedrockServer(faults=plan, max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        started = time.monotonic()
        assert len(invoke(client(), TITAN, {"inputText": "a"})["embedding"]) == 1024
        assert time.monotonic() - started >= 0.4
        assert srv.counters.outcomes == {"stalled": 1}


def test_fault_plan_is_validated_and_seeded():
    with pytest.raises(ValueError):
        FaultPlan(throttle_rate=0.7, truncated_rate=0.5)
    with pytest.raises(ValueError):
        FaultPlan(stall_seconds=3600)
    plan_a, plan_b = FaultPlan(seed=5, throttle_rate=0.3), FaultPlan(seed=5, throttle_rate=0.3)
    assert [plan_a.draw(claude=False, followup=False) for _ in range(50)] == [
        plan_b.draw(claude=False, followup=False) for _ in range(50)
    ]
    assert {plan_a.draw(claude=False, followup=False) for _ in range(200)} == {None, "throttle_rate"}
    answers_only = FaultPlan(refusal_rate=1.0, faults_on_followups=False)
    assert answers_only.draw(claude=True, followup=False) == "refusal_rate"
    assert answers_only.draw(claude=True, followup=True) is None
    assert answers_only.draw(claude=False, followup=False) is None


def test_fault_plan_faults_chosen_images_whatever_the_order(aws_env):
    from media_enrichment.testing.content import ImageFacts

    wide, narrow = ImageFacts("a" * 64, "image/png", 48, 8, "red"), ImageFacts("b" * 64, "image/png", 52, 8, "red")
    plan = FaultPlan(by_image=lambda facts: {48: "throttle_rate", 52: "refusal_rate"}.get(facts.width))
    assert [plan.draw(claude=True, followup=False, images=(wide,)) for _ in range(5)] == ["throttle_rate"] * 5
    assert plan.draw(claude=True, followup=True, images=(narrow,)) == "refusal_rate"
    assert plan.draw(claude=False, followup=False, images=(narrow,)) is None  # no answer fault for Titan
    assert plan.draw(claude=True, followup=False) is None  # no image, no random rate: no fault
    typo = FaultPlan(by_image=lambda facts: "throttle")
    with pytest.raises(ValueError, match="not a FaultPlan rate field"):
        typo.draw(claude=True, followup=False, images=(wide,))
    # Through the server: every Titan request about the 48-pixel image is throttled.
    image = base64.b64encode(encode(size=(48, 8))).decode()
    with BedrockServer(faults=FaultPlan(by_image=lambda f: "throttle_rate" if f.width == 48 else None), max_lifetime=60) as srv:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
        for _ in range(3):
            with pytest.raises(ClientError) as info:
                invoke(client(), TITAN, {"inputImage": image})
            assert info.value.response["Error"]["Code"] == "ThrottlingException"
        assert len(invoke(client(), TITAN, {"inputText": "text is not an image"})["embedding"]) == 1024


def test_server_is_loopback_only_and_stops_itself(aws_env):
    with pytest.raises(ValueError):
        BedrockServer(host="0.0.0.0")
    srv = BedrockServer(max_lifetime=0.2).start()
    aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.endpoint_url)
    time.sleep(0.5)
    with pytest.raises(EndpointConnectionError):
        invoke(client(), TITAN, {"inputText": "x"})
    srv.stop()  # idempotent


def test_unknown_routes_and_health(server):
    with urllib.request.urlopen(f"{server.endpoint_url}/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    request = urllib.request.Request(f"{server.endpoint_url}/model/{CLAUDE}/converse", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    with info.value as response:
        assert response.code == 404


# ---------------------------------------------------------------------------------------------
# Standalone: the command line, the control routes, independence from the library
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # starts a Python process
def test_the_fake_imports_nothing_of_the_library_it_fakes():
    code = "import json, sys, media_enrichment.testing.bedrock_server; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    loaded = [m for m in loaded if m.startswith("media_enrichment.")]
    assert {"media_enrichment.testing.bedrock_server", "media_enrichment.testing.claude", "media_enrichment.testing.nova"} <= set(loaded)
    assert [m for m in loaded if not m.startswith("media_enrichment.testing")] == []


@pytest.mark.slow  # starts a Python process
def test_standalone_server_counts_resets_its_quota_and_reports_on_interrupt(aws_env):
    command = [sys.executable, "-m", "media_enrichment.testing.bedrock_server", "--port", "0", "--lifetime", "60", "--rpm-quota", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            name, _, url = process.stdout.readline().strip().partition("=")
            assert name == "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" and url.startswith("http://127.0.0.1:")
            aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
            bedrock = client()
            invoke(bedrock, TITAN, {"inputText": "a"})
            assert error_of(bedrock, TITAN, {"inputText": "b"})[:2] == ("ThrottlingException", 429)
            with urllib.request.urlopen(f"{url}/_test/counters?log=1", timeout=5) as response:
                counters = json.loads(response.read())
            assert counters["outcomes"] == {"ok": 1, "quota": 1}
            assert [row[:2] for row in counters["log"]] == [[TITAN, "ok"], [TITAN, "quota"]]
            reset = urllib.request.Request(f"{url}/_test/reset", data=b"", method="POST")
            with urllib.request.urlopen(reset, timeout=5) as response:
                assert json.loads(response.read()) == {"reset": True}
            invoke(bedrock, TITAN, {"inputText": "c"})  # the quota window was cleared too
            process.send_signal(signal.SIGINT)
            assert json.loads(process.stdout.readline()) == {"ok": 1}
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
