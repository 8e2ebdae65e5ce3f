"""Bedrock providers against a Bedrock-compatible server on loopback, through the real boto3 client."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from PIL import Image

from media_enrichment.aws import bedrock_runtime_client, make_session
from media_enrichment.catalog import read_bytes
from media_enrichment.config import Settings
from media_enrichment.errors import (
    ConfigError,
    FatalProviderError,
    InvalidResponseError,
    RejectedRequestError,
    RetryableProviderError,
)
from media_enrichment.images import CLAUDE_LIMITS, TITAN_LIMITS, PreparedImage, prepare_image
from media_enrichment.pipeline.execution import ChunkEnricher
from media_enrichment.pipeline.plan import WorkItem, sha256_hex
from media_enrichment.prompts import load_prompt, prompt_version
from media_enrichment.providers.bedrock import build_bedrock_providers
from media_enrichment.providers.bedrock.answers import TOOL_NAME, extract_json_object, parse_claude_answer
from media_enrichment.providers.bedrock.describer import BedrockDescriber
from media_enrichment.providers.bedrock.embedders import BedrockEmbedder
from media_enrichment.providers.bedrock.errors import fix_line, translate_error
from media_enrichment.providers.bedrock.models import resolve_describer_model
from media_enrichment.testing import BedrockServer, FaultPlan
from media_enrichment.testing.claude import SAMPLING_MESSAGE

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1
TITAN = "amazon.titan-embed-image-v1"
ATTEMPTS = 3  # botocore attempts per request in these tests
TURNS = 3  # 1 + BedrockDescriber's default 2 corrective turns


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def bedrock(aws_env: pytest.MonkeyPatch):
    """Start a loopback server and point boto3 at it (AWS_ENDPOINT_URL_BEDROCK_RUNTIME, and
    AWS_ENDPOINT_URL_BEDROCK for the control plane unless ``control_plane=False``)."""
    servers: list[BedrockServer] = []

    def start(*, control_plane: bool = True, **kwargs) -> BedrockServer:
        server = BedrockServer(max_lifetime=120, **kwargs).start()
        servers.append(server)
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        if control_plane:
            aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK", server.endpoint_url)
        return server

    yield start
    for server in servers:
        server.stop()


def settings(**overrides) -> Settings:
    values = dict(
        provider="bedrock",
        bedrock_max_attempts=ATTEMPTS,
        bedrock_connect_timeout=2.0,
        bedrock_read_timeout=10.0,
        embedding_dim=256,
    )
    values.update(overrides)
    return Settings(**values)


def png(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def solid_png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def prepared(data: bytes, limits=CLAUDE_LIMITS) -> PreparedImage:
    return prepare_image(data, limits)


def sha(image: PreparedImage) -> str:
    return hashlib.sha256(image.data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Happy paths
# ---------------------------------------------------------------------------------------------


def test_png_goes_out_as_png_and_comes_back_as_metadata(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings())
    image = prepared(png(1))
    assert image.media_type == "image/png"

    result = describer.describe(image)

    assert server.counters.media_types == {"image/png": 1}
    (record,) = server.counters.log
    assert record.model_id == CLAUDE and record.outcome == "ok" and record.turns == 1
    assert record.image_sha256 == (sha(image),)
    assert result.metadata.title and result.metadata.description
    assert result.metadata.keywords and result.metadata.tags
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert describer.model_id == CLAUDE
    assert describer.prompt_version == load_prompt().version


def test_large_photo_prepared_for_claude_is_accepted(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings())
    gradient = Image.linear_gradient("L").resize((6000, 4000))
    buffer = io.BytesIO()
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient)).save(buffer, format="JPEG", quality=90)

    image = prepare_image(buffer.getvalue(), CLAUDE_LIMITS)
    result = describer.describe(image)

    assert max(image.width, image.height) <= 1568
    assert result.metadata.title
    (record,) = server.counters.log
    assert record.outcome == "ok" and record.media_types == (image.media_type,)


def test_wrong_media_type_is_rejected_once_without_retry(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings())
    image = prepared(png(2))
    mislabelled = PreparedImage(image.data, "image/jpeg", image.width, image.height)

    with pytest.raises(RejectedRequestError) as info:
        describer.describe(mislabelled)

    assert info.value.code == "ValidationException"
    assert "image/jpeg media type, but the image appears to be a image/png image" in str(info.value)
    assert server.counters.total == 1
    assert server.counters.outcomes == {"validation": 1}


def test_inference_profile_id_is_accepted_and_url_decoded_by_the_server(bedrock):
    server = bedrock()
    profile = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    describer, _ = build_bedrock_providers(settings(describer_model_id=profile))
    describer.describe(prepared(png(3)))
    assert dict(server.counters.requests) == {profile: 1}


def test_non_claude_model_ids_are_refused_at_construction(aws_env):
    with pytest.raises(ConfigError):
        build_bedrock_providers(settings(describer_model_id="amazon.nova-lite-v1:0"))
    with pytest.raises(ConfigError):
        build_bedrock_providers(settings(embedder_model_id="cohere.embed-english-v3"))


def test_text_and_image_embeddings_have_the_configured_dim(bedrock):
    server = bedrock()
    _, embedder = build_bedrock_providers(settings(embedding_dim=384))

    query = embedder.embed_text("a red poster")
    again = embedder.embed_text("a red poster")
    red = embedder.embed_image(prepared(solid_png((210, 20, 30)), TITAN_LIMITS))
    blue = embedder.embed_image(prepared(solid_png((30, 60, 210)), TITAN_LIMITS))
    captioned = embedder.embed_image(prepared(solid_png((210, 20, 30)), TITAN_LIMITS), text="red")

    for vector in (query, red, blue, captioned):
        assert vector.dtype == np.float32 and vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    assert np.array_equal(query, again)
    assert float(query @ red) > float(query @ blue)  # the fake server keeps colour words meaningful
    assert not np.allclose(captioned, red)
    assert embedder.dim == 384 and embedder.model_id == TITAN
    assert {r.dims for r in server.counters.log} == {384}
    with pytest.raises(ValueError):
        embedder.embed_text("   ")


def test_build_shares_one_client_configured_from_settings(bedrock):
    server = bedrock()
    describer, embedder = build_bedrock_providers(settings(concurrency=16, bedrock_retry_mode="adaptive"))
    assert describer.client is embedder.client
    config = describer.client.meta.config
    assert config.max_pool_connections == 32
    assert config.retries["mode"] == "adaptive"
    assert config.retries["total_max_attempts"] == ATTEMPTS
    assert config.read_timeout == 10.0 and config.connect_timeout == 2.0
    assert describer.client.meta.endpoint_url == server.endpoint_url
    assert describer.region == "us-east-1"


def test_endpoint_comes_from_boto3_configuration_only(aws_env):
    client = bedrock_runtime_client(make_session(profile=None, region="eu-west-1"), settings=settings())
    assert client.meta.endpoint_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert client.meta.config.max_pool_connections == 64  # a describe and an embed per slot of both windows (32 each)
    with pytest.raises(ConfigError):
        make_session(profile="no-such-profile", region=None)


# ---------------------------------------------------------------------------------------------
# Which Claude model: the default through a profile, fix lines, lifecycle warnings
# ---------------------------------------------------------------------------------------------

HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
RETIRED = "anthropic.claude-3-haiku-20240307-v1:0"


def test_default_describer_is_haiku_45_through_the_profile_of_the_regions_geography():
    expected = {
        "us-east-1": "us", "us-west-2": "us", "eu-west-1": "eu", "eu-central-1": "eu", "ap-northeast-1": "jp",
        "ap-northeast-3": "jp", "ap-southeast-2": "au", "ap-southeast-4": "au", "ap-southeast-1": "global",
        "ap-south-1": "global", "ca-central-1": "global", "sa-east-1": "global", "us-gov-west-1": "global",
        "xx-nowhere-9": "global", None: "global",
    }
    for region, geography in expected.items():
        assert resolve_describer_model(region) == f"{geography}.{HAIKU_45}", region
    # Anything configured is used verbatim: model ids, profile ids, ARNs.
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    for configured in ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", HAIKU_45, arn):
        assert resolve_describer_model("us-east-1", configured) == configured
    assert resolve_describer_model("eu-west-1", "  ") == f"eu.{HAIKU_45}"
    assert Settings().describer_model_id is None


def test_a_run_in_a_european_region_calls_the_eu_profile_of_haiku_45(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings(aws_region="eu-west-3"))
    assert describer.model_id == f"eu.{HAIKU_45}" and describer.region == "eu-west-3"
    describer.check_access()
    describer.describe(prepared(png(30)))
    assert dict(server.counters.requests) == {f"eu.{HAIKU_45}": 2}
    assert {r.credential.split("/")[1] for r in server.counters.log} == {"eu-west-3"}


def test_the_body_carries_temperature_or_nothing_never_top_p(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings())
    body = describer.request_body([describer.image_message(prepared(png(31)))])
    assert "temperature" not in body and "top_p" not in body
    warm = BedrockDescriber(describer.client, model_id=f"global.{HAIKU_45}", temperature=0.2)
    body = warm.request_body([warm.image_message(prepared(png(31)))])
    assert body["temperature"] == 0.2 and "top_p" not in body
    warm.check_access()  # Claude 4.5 refuses temperature with top_p: the server would answer 400
    assert warm.describe(prepared(png(31))).metadata.title
    assert server.counters.outcomes == {"ok": 2}


def test_check_access_turns_a_retired_model_into_one_line_naming_the_fix(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings(describer_model_id=RETIRED))
    with pytest.raises(FatalProviderError) as info:
        describer.check_access()
    assert str(info.value) == (
        f"model {RETIRED} has reached end of life on Bedrock (region us-east-1): set MEDIA_ENRICH_DESCRIBER_MODEL_ID "
        f"to a current one such as us.{HAIKU_45} (or unset it for the default)"
    )
    assert info.value.code == "ResourceNotFoundException"
    with pytest.raises(FatalProviderError, match="end of life"):  # mid-run too, it stops the run
        describer.describe(prepared(png(32)))
    assert server.counters.outcomes == {"end_of_life": 2}  # a 404 is not retried


def test_check_access_turns_a_bare_claude_4_id_into_the_profile_to_set(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings(describer_model_id=HAIKU_45, aws_region="eu-central-1"))
    with pytest.raises(FatalProviderError) as info:
        describer.check_access()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"model {HAIKU_45} is not served on demand")
    assert message.endswith(f"use an inference profile: set MEDIA_ENRICH_DESCRIBER_MODEL_ID=eu.{HAIKU_45}")
    with pytest.raises(FatalProviderError):  # no image could succeed: fatal, not a failure row per image
        describer.describe(prepared(png(33)))
    assert server.counters.outcomes == {"profile_required": 2}

    fixed, _ = build_bedrock_providers(settings(describer_model_id=f"eu.{HAIKU_45}", aws_region="eu-central-1"))
    fixed.check_access()  # the advice works


def test_a_refused_sampling_pair_gets_a_fix_line_too():
    service = translate_error(
        ClientError(
            {"Error": {"Code": "ValidationException", "Message": SAMPLING_MESSAGE},
             "ResponseMetadata": {"HTTPStatusCode": 400}},
            "InvokeModel",
        ),
        model_id=CLAUDE,
        region="us-east-1",
    )
    assert isinstance(service, RejectedRequestError)
    line = fix_line(str(service), service.code, model_id=CLAUDE, region="us-east-1")
    assert line == (
        f"model {CLAUDE} refuses temperature and top_p together (region us-east-1): "
        "send only one of them (the describer's temperature setting)"
    )
    other = "ValidationException (HTTP 400): something else"
    assert fix_line(other, "ValidationException", model_id=CLAUDE, region="us-east-1") is None


def test_a_legacy_model_warns_with_its_end_of_life_date_before_the_run(bedrock, caplog):
    server = bedrock(legacy_models={HAIKU_45: "2027-03-31"})
    describer, _ = build_bedrock_providers(settings())
    with caplog.at_level(logging.WARNING, logger="media_enrichment.providers.bedrock"):
        describer.check_access()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert f"model {CLAUDE} ({HAIKU_45}) is LEGACY on Bedrock and reaches end of life on 2027-03-31" in text
    # The default itself is legacy here: no suggestion of the same model.
    assert text.endswith("set MEDIA_ENRICH_DESCRIBER_MODEL_ID to a current model before then")
    assert describer.lifecycle.status == "LEGACY" and describer.lifecycle.end_of_life.year == 2027
    # The profile id was looked up by its base model, once; InvokeModel counted apart.
    assert dict(server.foundation_model_requests) == {HAIKU_45: 1}
    assert server.counters.outcomes == {"ok": 1}

    server.mark_legacy(HAIKU_45, "2027-03-31", extended_access_from="2027-01-15")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="media_enrichment.providers.bedrock"):
        describer.check_access()
    assert "higher prices from 2027-01-15" in caplog.records[-1].getMessage()

    sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    server.mark_legacy(sonnet, "2027-05-01")
    other, _ = build_bedrock_providers(settings(describer_model_id="global." + sonnet))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="media_enrichment.providers.bedrock"):
        other.check_access()
    assert caplog.records[-1].getMessage().endswith(
        f"reaches end of life on 2027-05-01 (region us-east-1): set MEDIA_ENRICH_DESCRIBER_MODEL_ID to a current "
        f"model such as {CLAUDE} before then"
    )


def test_an_active_model_gives_no_warning(bedrock, caplog):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings())
    with caplog.at_level(logging.WARNING, logger="media_enrichment.providers.bedrock"):
        describer.check_access()
    assert describer.lifecycle.status == "ACTIVE" and describer.lifecycle.model_id == HAIKU_45
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert dict(server.foundation_model_requests) == {HAIKU_45: 1}


def test_without_get_foundation_model_permission_nothing_breaks(bedrock, caplog):
    server = bedrock(control_plane_denied=True, legacy_models={HAIKU_45: "2027-03-31"})
    describer, _ = build_bedrock_providers(settings())
    with caplog.at_level(logging.DEBUG, logger="media_enrichment.providers.bedrock"):
        describer.check_access()
    assert describer.lifecycle is None
    assert dict(server.foundation_model_requests) == {HAIKU_45: 1}  # asked once, refused, not retried
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("AccessDenied" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert server.counters.outcomes == {"ok": 1}


def test_lifecycle_is_not_looked_up_at_aws_when_only_the_runtime_endpoint_is_redirected(bedrock):
    server = bedrock(control_plane=False, legacy_models={HAIKU_45: "2027-03-31"})
    describer, _ = build_bedrock_providers(settings())
    assert describer.control_client is None
    describer.check_access()
    assert describer.lifecycle is None and not server.foundation_model_requests


# ---------------------------------------------------------------------------------------------
# Faults: every image ends described or with the right error, none called more than the bound
# ---------------------------------------------------------------------------------------------

# fault -> (expected error class, requests allowed per image and model, also embed?)
FAULTS = {
    "throttle_rate": (RetryableProviderError, ATTEMPTS, True),
    "model_not_ready_rate": (RetryableProviderError, ATTEMPTS, True),
    "unavailable_rate": (RetryableProviderError, ATTEMPTS, True),
    "internal_error_rate": (RetryableProviderError, ATTEMPTS, True),
    "model_timeout_rate": (RetryableProviderError, 1, True),  # botocore does not retry 408
    "stall_rate": (RetryableProviderError, ATTEMPTS, True),
    "malformed_rate": (InvalidResponseError, TURNS, False),
    "truncated_rate": (InvalidResponseError, TURNS, False),
    "refusal_rate": (InvalidResponseError, TURNS, False),
}
OUTCOME = {
    "throttle_rate": "throttled",
    "model_not_ready_rate": "not_ready",
    "unavailable_rate": "unavailable",
    "internal_error_rate": "internal_error",
    "model_timeout_rate": "model_timeout",
    "stall_rate": "stalled",
    "malformed_rate": "malformed",
    "truncated_rate": "truncated",
    "refusal_rate": "refusal",
}


@pytest.mark.slow  # 3-6 s a fault: botocore's real back-off against the server
@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_faults_end_in_a_result_or_the_right_error(bedrock, fault):
    error_class, bound, embed_too = FAULTS[fault]
    plan = FaultPlan(seed=7, stall_seconds=0.6, **{fault: 0.2})
    server = bedrock(faults=plan)
    # A short read timeout only where the fault is a stall: elsewhere a slow answer on a busy
    # machine would time out and be retried, which is not the fault under test.
    describer, embedder = build_bedrock_providers(settings(bedrock_read_timeout=0.3 if fault == "stall_rate" else 10.0))
    images = [prepared(png(100 + i)) for i in range(40)]

    def run(image: PreparedImage) -> list[object]:
        outcomes: list[object] = []
        calls = [describer.describe] + ([embedder.embed_image] if embed_too else [])
        for call in calls:
            try:
                outcomes.append(call(image))
            except Exception as exc:  # noqa: BLE001 - classified below
                outcomes.append(exc)
        return outcomes

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, images))

    errors = [o for r in results for o in r if isinstance(o, Exception)]
    successes = [o for r in results for o in r if not isinstance(o, Exception)]
    assert all(isinstance(e, error_class) for e in errors), [repr(e) for e in errors]
    assert len(errors) + len(successes) == len(images) * (2 if embed_too else 1)
    assert len(successes) >= len(images) * 0.6
    assert server.counters.outcomes[OUTCOME[fault]] >= 3  # the fault really happened
    assert max(server.counters.model_images.values()) <= bound
    for image in images:
        assert server.counters.model_images[(CLAUDE, sha(image))] >= 1
    if error_class is InvalidResponseError:
        assert all(e.raw is not None for e in errors)


# ---------------------------------------------------------------------------------------------
# Answers: repairs and corrective turns
# ---------------------------------------------------------------------------------------------


def test_prose_fences_and_trailing_commas_are_repaired_without_another_turn(bedrock):
    server = bedrock(faults=FaultPlan(seed=3, malformed_rate=1.0, faults_on_followups=False))
    describer, _ = build_bedrock_providers(settings())
    images = [prepared(png(200 + i)) for i in range(16)]

    results = [describer.describe(image) for image in images]

    assert all(r.metadata.title for r in results)
    variants = {}
    for record in server.counters.log:
        if record.detail.startswith("malformed:"):
            variants[record.image_sha256[0]] = record.detail.split(":")[1]
    assert set(variants.values()) == {"prose", "fence", "trailing_comma", "broken"}
    for digest, variant in variants.items():
        expected = 2 if variant == "broken" else 1  # only broken JSON needs a corrective turn
        assert server.counters.images[digest] == expected, variant


def test_truncated_answer_is_retried_with_a_corrective_turn(bedrock):
    server = bedrock(faults=FaultPlan(seed=1, truncated_rate=1.0, faults_on_followups=False))
    describer, _ = build_bedrock_providers(settings(max_output_tokens=512))

    result = describer.describe(prepared(png(4)))

    first, second = server.counters.log
    assert first.outcome == "truncated" and first.turns == 1 and first.max_tokens == 512
    assert second.outcome == "ok" and second.turns == 3 and second.max_tokens == 1024
    assert result.metadata.title
    assert result.input_tokens == server.counters.input_tokens
    assert result.output_tokens == server.counters.output_tokens


def test_small_token_budget_is_raised_after_a_natural_truncation(bedrock):
    server = bedrock()
    describer, _ = build_bedrock_providers(settings(max_output_tokens=64))
    result = describer.describe(prepared(png(5)))
    assert [r.max_tokens for r in server.counters.log] == [64, 128]
    assert result.metadata.description


def test_raw_answer_is_kept_when_the_corrective_turns_are_exhausted(bedrock):
    server = bedrock(faults=FaultPlan(seed=2, truncated_rate=1.0))
    describer, _ = build_bedrock_providers(settings())

    with pytest.raises(InvalidResponseError) as info:
        describer.describe(prepared(png(6)))

    assert info.value.code == "truncated"
    assert info.value.raw and ("title" in info.value.raw or info.value.raw.startswith("{"))
    assert "after 3 turn(s)" in str(info.value)
    assert server.counters.total == TURNS
    assert [r.turns for r in server.counters.log] == [1, 3, 3]


def test_refusal_gets_a_corrective_turn(bedrock):
    server = bedrock(faults=FaultPlan(seed=4, refusal_rate=1.0, faults_on_followups=False))
    describer, _ = build_bedrock_providers(settings())
    result = describer.describe(prepared(png(7)))
    assert result.metadata.title
    assert [r.outcome for r in server.counters.log] == ["refusal", "ok"]


def test_parse_claude_answer_cases():
    good = {"title": "Red door", "description": "A red door.", "keywords": ["door"], "tags": ["Architecture"]}
    tool = {"content": [{"type": "tool_use", "id": "t", "name": TOOL_NAME, "input": good}], "stop_reason": "tool_use"}
    parsed = parse_claude_answer(tool)
    assert parsed.metadata and parsed.metadata.tags == ["architecture"] and parsed.metadata.ocr_texts == []

    # Only the forced tool's input is metadata: a call of another tool is unusable (corrective turn).
    other = {"content": [{"type": "tool_use", "id": "t", "name": "x", "input": good}], "stop_reason": "tool_use"}
    wrong = parse_claude_answer(other)
    assert wrong.metadata is None and wrong.kind == "wrong_tool" and "'x'" in wrong.problem

    fenced = "Sure!\n```json\n" + json.dumps(good, indent=1) + "\n```\nAnything else?"
    assert parse_claude_answer({"content": [{"type": "text", "text": fenced}], "stop_reason": "end_turn"}).metadata

    prose = "The metadata is " + json.dumps(good)[:-1] + ",} as requested."
    assert extract_json_object(prose)["title"] == "Red door"

    encoded = dict(good, keywords=json.dumps(["door, red", "entrance"]))
    meta = parse_claude_answer({"content": [{"type": "tool_use", "input": encoded}], "stop_reason": "tool_use"}).metadata
    assert meta.keywords == ["door, red", "entrance"]  # a JSON-encoded list is decoded, not split

    broken = parse_claude_answer({"content": [{"type": "text", "text": '{"title": "Red'}], "stop_reason": "end_turn"})
    assert broken.metadata is None and broken.kind == "no_metadata" and broken.raw == '{"title": "Red'

    missing = parse_claude_answer({"content": [{"type": "tool_use", "input": {"title": "x"}}], "stop_reason": "tool_use"})
    assert missing.kind == "invalid" and "description" in missing.problem

    cut = parse_claude_answer({"content": [{"type": "tool_use", "input": good}], "stop_reason": "max_tokens"})
    assert cut.kind == "truncated" and cut.metadata is None

    assert parse_claude_answer({"content": [], "stop_reason": "refusal"}).kind == "refusal"


# ---------------------------------------------------------------------------------------------
# Access checks and error translation
# ---------------------------------------------------------------------------------------------


def test_access_denied_is_fatal_from_check_access_naming_model_and_region(bedrock):
    server = bedrock(denied_models={CLAUDE, TITAN})
    describer, embedder = build_bedrock_providers(settings())

    with pytest.raises(FatalProviderError) as info:
        describer.check_access()
    assert CLAUDE in str(info.value) and "us-east-1" in str(info.value)
    assert info.value.code == "AccessDeniedException"

    with pytest.raises(FatalProviderError) as info:
        embedder.check_access()
    assert TITAN in str(info.value) and "us-east-1" in str(info.value)
    assert server.counters.outcomes == {"access_denied": 2}  # 403 is not retried


def test_unknown_model_is_fatal_and_a_good_model_passes_the_check(bedrock):
    bedrock()
    unknown = "anthropic.claude-9-imaginary-v1:0"
    describer, embedder = build_bedrock_providers(settings(describer_model_id=unknown))
    with pytest.raises(FatalProviderError) as info:
        describer.check_access()
    assert unknown in str(info.value) and info.value.code == "ResourceNotFoundException"
    embedder.check_access()  # no exception


def test_missing_credentials_are_fatal(bedrock, aws_env):
    bedrock()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        aws_env.delenv(name)
    describer, _ = build_bedrock_providers(settings())
    with pytest.raises(FatalProviderError) as info:
        describer.check_access()
    assert info.value.code == "NoCredentialsError" and CLAUDE in str(info.value)


def test_unreachable_endpoint_is_retryable(aws_env):
    server = BedrockServer().start()
    url = server.endpoint_url
    server.stop()
    aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    describer, _ = build_bedrock_providers(settings(bedrock_max_attempts=1))
    with pytest.raises(RetryableProviderError) as info:
        describer.describe(prepared(png(8)))
    assert info.value.code == "EndpointConnectionError"


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "boom"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 2},
    }
    return ClientError(response, "InvokeModel")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 429, RetryableProviderError),
        ("ServiceUnavailableException", 503, RetryableProviderError),
        ("InternalServerException", 500, RetryableProviderError),
        ("ModelTimeoutException", 408, RetryableProviderError),
        ("ModelNotReadyException", 429, RetryableProviderError),
        ("ValidationException", 400, RejectedRequestError),
        ("ModelErrorException", 424, RejectedRequestError),
        ("AccessDeniedException", 403, FatalProviderError),
        ("ResourceNotFoundException", 404, FatalProviderError),
        ("UnrecognizedClientException", 403, FatalProviderError),
        ("SomethingNew", 502, RetryableProviderError),
        ("SomethingElse", 409, RejectedRequestError),
    ],
)
def test_translate_error_maps_service_codes(code, status, expected):
    error = translate_error(_client_error(code, status), model_id="m", region="r")
    assert type(error) is expected and error.code == code
    assert "'m'" in str(error) and "region r" in str(error)


def test_translate_error_maps_botocore_exceptions():
    assert isinstance(translate_error(NoCredentialsError(), model_id="m", region="r"), FatalProviderError)
    timeout = ReadTimeoutError(endpoint_url="http://x")
    assert isinstance(translate_error(timeout, model_id="m", region="r"), RetryableProviderError)
    refused = EndpointConnectionError(endpoint_url="http://x")
    assert isinstance(translate_error(refused, model_id="m", region="r"), RetryableProviderError)


def test_constructor_bounds(aws_env):
    client = bedrock_runtime_client(make_session(profile=None, region="us-east-1"), settings=settings())
    with pytest.raises(ConfigError):
        BedrockEmbedder(client, dim=512)
    with pytest.raises(ConfigError):
        BedrockDescriber(client, model_id=CLAUDE, corrective_turns=9)
    assert BedrockDescriber(client, model_id="arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.x").model_id


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def test_default_prompt_is_versioned_by_its_text():
    prompt = load_prompt()
    assert prompt.name == "describe_v1"
    assert prompt.version == hashlib.sha256(prompt.text.encode()).hexdigest()[:12]
    for field in ("title", "description", "keywords", "tags", "ocr_texts", "verbatim"):
        assert field in prompt.text


def test_custom_prompt_file(tmp_path, bedrock):
    path = tmp_path / "retail.txt"
    path.write_text("Describe the product for an online shop.\r\nList visible text verbatim.\n", encoding="utf-8")
    prompt = load_prompt(path)
    assert prompt.name == "retail" and "\r" not in prompt.text
    assert prompt.version == prompt_version(prompt.text) != load_prompt().version

    bedrock()
    describer, _ = build_bedrock_providers(settings(prompt_file=path))
    assert describer.prompt_version == prompt.version

    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_prompt(tmp_path / "empty.txt")
    with pytest.raises(ConfigError):
        load_prompt(tmp_path / "missing.txt")


def test_chunk_retries_transient_errors_without_paying_twice(monkeypatch, tmp_path):
    """Throttling that outlasts botocore's attempts gets another pass at the end of the chunk."""
    items = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (64, 48), (20 * i, 100, 200 - 10 * i)).save(path)
        items.append(WorkItem(image_id=str(i), source_uri=str(path), content_sha256=sha256_hex(path.read_bytes())))
    with BedrockServer(faults=FaultPlan(seed=5, throttle_rate=0.3)) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        describer, embedder = build_bedrock_providers(Settings(provider="bedrock", bedrock_max_attempts=1))
        enricher = ChunkEnricher(
            describer=describer, embedder=embedder, read=read_bytes, run_id="r", transient_retries=6, retry_delay_s=0.01
        )
        result = enricher.enrich(items)
        assert len(result.rows) == 12 and not result.failures
        assert server.counters.outcomes["throttled"] > 0
        assert max(server.counters.billed_images.values()) == 1, "a described image is not described again"
