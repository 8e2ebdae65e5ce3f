from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from media_enrichment.catalog import load_catalog, read_bytes
from media_enrichment_prefect.cli import app
from media_enrichment.cost import DEFAULT_PRICES, ModelPrice, estimate_catalog, load_prices, price_for, run_cost
from media_enrichment.errors import ConfigError


def test_price_lookup_strips_inference_profile_geography_and_prefers_longest_key():
    prices = {**DEFAULT_PRICES, "anthropic.claude-3-5": ModelPrice(1, 1)}
    assert price_for("us.anthropic.claude-3-5-sonnet-20240620-v1:0", prices) == ModelPrice(3.00, 15.00)  # the longer key
    assert price_for("anthropic.claude-3-5-other", prices) == ModelPrice(1, 1)
    assert price_for("local/rapidocr-visual-v1", prices) == ModelPrice()
    assert price_for("mistral.pixtral", prices) is None


HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"


def test_haiku_45_costs_1_and_5_dollars_globally_and_10_percent_more_through_a_geographic_profile():
    assert price_for(HAIKU_45, DEFAULT_PRICES) == ModelPrice(1.00, 5.00)
    assert price_for("global." + HAIKU_45, DEFAULT_PRICES) == ModelPrice(1.00, 5.00)
    for geography in ("us.", "eu.", "jp.", "au."):
        assert price_for(geography + HAIKU_45, DEFAULT_PRICES) == ModelPrice(1.10, 5.50), geography
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu." + HAIKU_45
    assert price_for(arn, DEFAULT_PRICES) == ModelPrice(1.10, 5.50)
    assert price_for("global.anthropic.claude-sonnet-4-5-20250929-v1:0", DEFAULT_PRICES) == ModelPrice(3.00, 15.00)
    assert price_for("us.anthropic.claude-sonnet-4-5-20250929-v1:0", DEFAULT_PRICES) == ModelPrice(3.30, 16.50)
    assert price_for("us.anthropic.claude-opus-4-5-20251101-v1:0", DEFAULT_PRICES) == ModelPrice(5.50, 27.50)
    # Older models have one price whatever the profile; an application profile ARN names no model.
    assert price_for("us.anthropic.claude-3-5-sonnet-20240620-v1:0", DEFAULT_PRICES) == ModelPrice(3.00, 15.00)
    assert price_for("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2", DEFAULT_PRICES) is None
    cost = run_cost(
        enrichment_model="us." + HAIKU_45, embedding_model="amazon.titan-embed-image-v1",
        input_tokens=2_000_000, output_tokens=1_000_000, images=0, prices=DEFAULT_PRICES,
    )
    assert cost == pytest.approx(2 * 1.10 + 5.50)


def test_a_price_file_base_key_reprices_its_profiles_unless_it_names_them(tmp_path):
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"anthropic.claude-haiku-4-5": {"input_per_mtok": 0.5, "output_per_mtok": 2.5}}))
    prices = load_prices(file)
    assert price_for("us." + HAIKU_45, prices) == ModelPrice(0.5, 2.5)
    assert price_for("global." + HAIKU_45, prices) == ModelPrice(0.5, 2.5)
    assert price_for("us.anthropic.claude-sonnet-4-5-20250929-v1:0", prices) == ModelPrice(3.30, 16.50)  # untouched
    file.write_text(json.dumps({
        "anthropic.claude-haiku-4-5": {"input_per_mtok": 0.5, "output_per_mtok": 2.5},
        "eu.anthropic.claude-haiku-4-5": {"input_per_mtok": 0.6, "output_per_mtok": 3.0},
    }))
    prices = load_prices(file)
    assert price_for("eu." + HAIKU_45, prices) == ModelPrice(0.6, 3.0)
    assert price_for("jp." + HAIKU_45, prices) == ModelPrice(0.5, 2.5)


def test_run_cost_adds_tokens_and_images():
    cost = run_cost(
        enrichment_model="anthropic.claude-3-haiku-x", embedding_model="amazon.titan-embed-image-v1",
        input_tokens=1_000_000, output_tokens=1_000_000, images=1000, prices=DEFAULT_PRICES,
    )
    assert cost == pytest.approx(0.25 + 1.25 + 1000 * 0.00006)
    assert run_cost(enrichment_model="unknown", embedding_model="amazon.titan-embed-image-v1",
                    input_tokens=1, output_tokens=1, images=1, prices=DEFAULT_PRICES) is None


def test_price_file_overrides_and_bad_file_is_a_config_error(tmp_path):
    good = tmp_path / "prices.json"
    good.write_text(json.dumps({"anthropic.claude-3-haiku": {"input_per_mtok": 9, "output_per_mtok": 9}}))
    assert load_prices(good)["anthropic.claude-3-haiku"] == ModelPrice(9, 9)
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": {"nope": 1}}')
    with pytest.raises(ConfigError, match="price file"):
        load_prices(bad)


def test_estimate_catalog_and_cli(tmp_path):
    Image.new("RGB", (1500, 1000), "red").save(tmp_path / "a.jpg")
    Image.new("RGB", (300, 300), "blue").save(tmp_path / "b.png")
    (tmp_path / "c.jpg").write_text("not an image")
    catalog = load_catalog(tmp_path)
    estimate = estimate_catalog(
        catalog, read=read_bytes, enrichment_model="eu." + HAIKU_45,
        embedding_model="amazon.titan-embed-image-v1", prompt_tokens_per_image=500, output_tokens_per_image=300,
        prices=DEFAULT_PRICES,
    )
    assert estimate.images == 2 and estimate.unreadable == 1
    # 1500 x 1000 is scaled to 1313 x 875 (1532 tokens); 300 x 300 is 90,000 / 750 = 120.
    assert estimate.image_tokens == 1532 + 120
    assert estimate.input_tokens == 1652 + 2 * 500
    expected = (2652 * 1.10 + 600 * 5.50) / 1e6 + 2 * 0.00006
    assert estimate.cost_usd == pytest.approx(expected)

    # The CLI prices the model a run would call: the default's profile for the region.
    result = CliRunner().invoke(
        app, ["estimate", str(tmp_path)], env={"COLUMNS": "200", "MEDIA_ENRICH_AWS_REGION": "eu-west-1"}
    )
    assert result.exit_code == 0, result.output
    assert "image tokens" in result.output and "1652" in result.output
    assert "eu." + HAIKU_45 in result.output
