"""``AWS_REGION`` is honoured wherever a region is resolved, in one order (``aws.resolve_region``):
``MEDIA_ENRICH_AWS_REGION`` > an AwsCredentials block's region > ``AWS_REGION`` >
``AWS_DEFAULT_REGION`` > the profile's region. boto3 alone reads only the last two."""

from __future__ import annotations

import pytest

from media_enrichment_prefect.flows.enrich import enrich_catalog
from media_enrichment.aws import bedrock_runtime_client, make_session, resolve_region, s3_client, storage_options
from media_enrichment.config import build_settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError
from media_enrichment.testing import BedrockServer
from media_enrichment_prefect.tasks.aws import run_region
from media_enrichment_prefect.tasks.limits import rate_limit_specs

CONFIG = "[default]\nregion = sa-east-1\n\n[profile west]\nregion = ap-northeast-1\n"


@pytest.fixture
def no_region(aws_env):
    """Fake credentials and no region anywhere (aws_env's AWS_DEFAULT_REGION removed)."""
    aws_env.delenv("AWS_DEFAULT_REGION")
    return aws_env


#: Each case builds boto3 clients on fresh botocore sessions (0.5-2.6 s a case on 2 busy cores):
#: ``make test-fast`` keeps the first and the last, the rest run in ``make test``.
_SLOW_CASE = pytest.mark.slow


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({"AWS_REGION": "us-west-2"}, "", "us-west-2"),  # the README's `export AWS_REGION=...`
        pytest.param({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}, CONFIG, "us-west-2", marks=_SLOW_CASE),
        pytest.param({"AWS_DEFAULT_REGION": "us-east-1"}, CONFIG, "us-east-1", marks=_SLOW_CASE),
        pytest.param({}, CONFIG, "sa-east-1", marks=_SLOW_CASE),  # the default profile's region
        pytest.param({"AWS_PROFILE": "west"}, CONFIG, "ap-northeast-1", marks=_SLOW_CASE),
        pytest.param({"MEDIA_ENRICH_AWS_PROFILE": "west"}, CONFIG, "ap-northeast-1", marks=_SLOW_CASE),
        pytest.param({"MEDIA_ENRICH_AWS_PROFILE": "west", "AWS_REGION": "us-west-2"}, CONFIG, "us-west-2", marks=_SLOW_CASE),
        ({"MEDIA_ENRICH_AWS_REGION": "eu-west-3", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}, CONFIG,
         "eu-west-3"),
    ],
)
def test_every_client_takes_the_region_in_one_order(no_region, tmp_path, env, config, expected):
    (tmp_path / "aws-config").write_text(config)
    (tmp_path / "aws-credentials").write_text("[west]\naws_access_key_id = AKIDWEST\naws_secret_access_key = s\n")
    for key, value in env.items():
        no_region.setenv(key, value)
    settings = build_settings({"describer_rpm": 60})
    assert resolve_region(settings.aws_region, profile=settings.aws_profile) == expected
    assert run_region(settings) == expected
    session = make_session(profile=settings.aws_profile, region=settings.aws_region)
    assert bedrock_runtime_client(session, settings=settings).meta.region_name == expected
    assert s3_client(settings).meta.region_name == expected
    assert storage_options(None, region=run_region(settings)) == {"AWS_REGION": expected}  # delta-rs
    assert storage_options(session)["AWS_REGION"] == expected
    [spec] = rate_limit_specs(settings)
    assert spec.name.startswith(f"bedrock:{expected}:")


def test_no_region_at_all_is_one_clear_error(cli, no_region, tmp_path, sample_manifest):
    settings = build_settings({"provider": "bedrock"})
    assert resolve_region() is None
    with pytest.raises(ConfigError, match="no AWS region for Bedrock: set MEDIA_ENRICH_AWS_REGION, AWS_REGION"):
        bedrock_runtime_client(make_session(profile=None, region=None), settings=settings)
    done = cli("run", str(sample_manifest), "--provider", "bedrock", cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "no AWS region for Bedrock: set AWS_REGION" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr and not (tmp_path / ".prefect").exists()


@pytest.fixture
def bedrock(no_region):
    with BedrockServer() as server:
        no_region.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        no_region.setenv("AWS_ENDPOINT_URL_BEDROCK", server.endpoint_url)
        yield server


def _regions(server: BedrockServer) -> set[str]:
    """The regions the requests were signed for (SigV4 credential scope)."""
    return {credential.split("/")[1] for credential in server.counters.credentials}


def test_cli_run_on_bedrock_with_only_aws_region(cli, bedrock, no_region, sample_manifest, tmp_path):
    """The README's Bedrock example: region only in AWS_REGION, the default model, a catalogue enriched."""
    no_region.setenv("AWS_REGION", "us-east-1")
    done = cli("run", str(sample_manifest), "--provider", "bedrock", "--dataset", "ds", "--limit", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = Dataset(str(tmp_path / "ds")).read_assets()
    assert len(rows) == 3 and set(rows["enrichment_model"]) == {"us.anthropic.claude-haiku-4-5-20251001-v1:0"}
    assert _regions(bedrock) == {"us-east-1"}


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_signs_for_aws_region_over_aws_default_region(bedrock, no_region, sample_manifest, tmp_path):
    no_region.setenv("AWS_DEFAULT_REGION", "us-east-1")
    no_region.setenv("AWS_REGION", "eu-west-1")
    summary = enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", limit=1)
    assert summary["enriched"] == 1 and summary["enrichment_model"].startswith("eu."), "the profile of eu-west-1"
    assert _regions(bedrock) == {"eu-west-1"}


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("block_region", "env", "expected"),
    [
        ("eu-west-3", {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-3"),  # block > AWS_REGION
        (None, {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}, "us-west-2"),  # no block region
        ("eu-west-3", {"MEDIA_ENRICH_AWS_REGION": "eu-central-1", "AWS_REGION": "us-west-2"}, "eu-central-1"),
    ],
)
def test_an_aws_credentials_block_region_has_its_place(bedrock, no_region, sample_manifest, tmp_path, block_region, env,
                                                       expected):
    from prefect_aws import AwsCredentials

    AwsCredentials(aws_access_key_id="AKIDREGIONBLOCK", aws_secret_access_key="s", region_name=block_region).save(
        "region-order", overwrite=True
    )
    no_region.setenv("MEDIA_ENRICH_AWS_CREDENTIALS_BLOCK", "region-order")
    for key, value in env.items():
        no_region.setenv(key, value)
    assert run_region(build_settings()) == expected
    summary = enrich_catalog(source=str(sample_manifest), dataset=str(tmp_path / "ds"), provider="bedrock", limit=1)
    assert summary["enriched"] == 1
    assert set(bedrock.counters.credentials) == {f"AKIDREGIONBLOCK/{expected}"}
    [spec] = rate_limit_specs(build_settings({"embedder_rpm": 60}))
    assert spec.name.startswith(f"bedrock:{expected}:")
