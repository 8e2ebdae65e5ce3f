"""The flow with the Bedrock provider: the real boto3 client against our Bedrock-compatible
server on loopback (only the network is faked)."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.dataset import Dataset
from media_enrichment.errors import FatalProviderError
from media_enrichment.testing import BedrockServer, FaultPlan

pytestmark = pytest.mark.usefixtures("prefect_harness")

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # the default describer in us-east-1
TITAN = "amazon.titan-embed-image-v1"


@pytest.fixture
def bedrock(monkeypatch):
    """The server, with boto3 pointed at it through its own environment variables."""
    with BedrockServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MEDIA_ENRICH_BEDROCK_MAX_ATTEMPTS", "3")
        monkeypatch.setenv("MEDIA_ENRICH_BEDROCK_READ_TIMEOUT", "1.5")
        yield server


def _ids(manifest) -> list[str]:
    return sorted(pd.read_csv(manifest, dtype=str)["image_id"])


def test_second_run_calls_no_model(bedrock, sample_manifest, tmp_path):
    dataset = str(tmp_path / "ds")
    first = enrich_catalog(source=str(sample_manifest), dataset=dataset, provider="bedrock", embedding_dim=384)
    ids = _ids(sample_manifest)
    assert first["enriched"] == len(ids) and first["failed"] == 0 and first["assets_version"] == 0
    rows = Dataset(dataset).read_assets()
    assert set(rows["enrichment_model"]) == {CLAUDE} and set(rows["embedding_model"]) == {TITAN}
    assert (rows["input_tokens"] > 0).all() and (rows["output_tokens"] > 0).all()
    assert first["input_tokens"] == int(rows["input_tokens"].sum())
    assert first["estimated_cost_usd"] > 0
    assert all(len(v) == 384 for v in rows["embedding"])
    # Every image was described and embedded exactly once (the two access checks are extra).
    per_model = Counter(model for model, _ in bedrock.counters.billed_images)
    assert per_model[CLAUDE] >= len(ids) and max(bedrock.counters.billed_images.values()) == 1
    assert {"image/png", "image/jpeg"} <= set(bedrock.counters.media_types)

    before = bedrock.counters.total
    second = enrich_catalog(source=str(sample_manifest), dataset=dataset, provider="bedrock", embedding_dim=384)
    assert second["enriched"] == 0 and second["reused"] == len(ids)
    assert bedrock.counters.total == before, "a run with nothing to do calls no model"
    assert Dataset(dataset).version() == 0


def test_faults_at_20_percent_lose_and_duplicate_nothing(bedrock, sample_manifest, tmp_path, monkeypatch):
    bedrock.faults = FaultPlan(
        seed=11,
        throttle_rate=0.2 / 6, unavailable_rate=0.2 / 6, internal_error_rate=0.2 / 6,
        model_timeout_rate=0.2 / 6, malformed_rate=0.2 / 6, truncated_rate=0.2 / 6,
    )
    monkeypatch.setenv("MEDIA_ENRICH_TRANSIENT_RETRIES", "0")  # let transient faults reach the table
    dataset = str(tmp_path / "ds")
    ids = _ids(sample_manifest)
    first = enrich_catalog(source=str(sample_manifest), dataset=dataset, provider="bedrock", chunk_size=4, concurrency=4)
    store = Dataset(dataset)
    enriched = set(store.read_assets()["image_id"])
    failed = set(store.read_failures()["image_id"])
    assert enriched | failed == set(ids) and not enriched & failed, "every image enriched or a failure row"
    assert first["enriched"] == len(enriched) and first["failed"] == len(failed)
    assert failed, "with 20% faults and no in-run retries some images fail"
    failures = store.read_failures()
    assert set(failures["stage"]) <= {"describe", "embed"}
    assert set(failures["error_type"]) <= {
        "ThrottlingException", "ServiceUnavailableException", "InternalServerException",
        "ModelTimeoutException", "InvalidResponseError",
    }
    # A Claude answer is billed at most once per image, corrective turns aside.
    assert max(n for (model, _), n in bedrock.counters.billed_images.items() if model == TITAN) == 1

    bedrock.faults = FaultPlan()  # the service recovers: the next run retries only the failures
    monkeypatch.setenv("MEDIA_ENRICH_TRANSIENT_RETRIES", "2")
    second = enrich_catalog(source=str(sample_manifest), dataset=dataset, provider="bedrock", chunk_size=4)
    assert second["enriched"] == len(failed) and second["reused"] == len(enriched) and second["failed"] == 0
    rows = store.read_assets()
    assert sorted(rows["image_id"]) == ids and rows["image_id"].is_unique
    assert store.read_failures().empty
    titan_billed = sum(n for (model, _), n in bedrock.counters.billed_images.items() if model == TITAN)
    assert titan_billed == len(ids), "each image embedded exactly once over both runs"


def test_access_denied_stops_before_the_catalogue(monkeypatch, sample_manifest, tmp_path):
    with BedrockServer(denied_models=[CLAUDE]) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        with pytest.raises(FatalProviderError, match=CLAUDE):
            enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock")
        assert server.counters.total <= 2, "only the access checks were sent"
    assert Dataset(str(tmp_path / "ds")).version() is None


def test_cli_run_with_bedrock_provider(cli, bedrock, sample_manifest, tmp_path):
    result = cli(
        "run", str(sample_manifest), "--provider", "bedrock", "--dataset", str(tmp_path / "ds"), "--embedding-dim", "256",
        "--limit", "10", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert CLAUDE in result.stdout
    rows = Dataset(str(tmp_path / "ds")).read_assets()
    assert len(rows) == 10 and set(rows["embedding_dim"]) == {256}
    assert bedrock.counters.requests[TITAN] >= 10


def test_shared_rate_limits_are_created_and_used_by_the_flow(bedrock, monkeypatch, sample_manifest, tmp_path):
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("MEDIA_ENRICH_SHARED_RATE_LIMITS", "true")
    monkeypatch.setenv("MEDIA_ENRICH_DESCRIBER_RPM", "6000")
    summary = enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", limit=6)
    assert summary["enriched"] == 6
    gate = summary["rate_control"]["describer"]
    assert "PrefectRateLimiter" in gate["rpm"] and gate["calls"] >= 6
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"bedrock:us-east-1:{CLAUDE}:rpm")
    assert limit.slot_decay_per_second == pytest.approx(100.0)


def test_credentials_and_region_from_an_aws_credentials_block(aws_env, sample_manifest, tmp_path):
    """The session of a prefect-aws AwsCredentials block signs the requests (key and region)."""
    from prefect_aws import AwsCredentials

    from media_enrichment.errors import ConfigError

    AwsCredentials(
        aws_access_key_id="AKIDFROMBLOCK", aws_secret_access_key="block-secret", region_name="eu-west-3"
    ).save("media-enrichment-test", overwrite=True)
    with BedrockServer() as server:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        aws_env.setenv("MEDIA_ENRICH_AWS_CREDENTIALS_BLOCK", "media-enrichment-test")
        summary = enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", limit=3)
        assert summary["enriched"] == 3
        assert set(server.counters.credentials) == {"AKIDFROMBLOCK/eu-west-3"}
        aws_env.setenv("MEDIA_ENRICH_AWS_CREDENTIALS_BLOCK", "no-such-block")
        with pytest.raises(ConfigError, match="no-such-block"):
            enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds2"), provider="bedrock", limit=1)
