"""Cost estimates: a per-model price table, a run's cost, and a catalogue's estimate.

Token counts come from ``media_enrichment.tokens`` (one estimator for the cost estimate and the
describer's token budget).

Prices are list prices for on-demand use in US regions as published by AWS (USD); they change
and differ by region, so they are defaults to override with a JSON file of your own
(``MEDIA_ENRICH_PRICE_FILE`` / ``--prices``)::

    {"anthropic.claude-haiku-4-5": {"input_per_mtok": 1.0, "output_per_mtok": 5.0},
     "amazon.titan-embed-image-v1": {"per_image": 0.00006, "input_per_mtok": 0.8}}

Keys match model ids by prefix; the longest matching key wins. A key may name a geographic
inference profile (``us.anthropic.claude-haiku-4-5``): ids of that profile get its price.
Otherwise the profile's geography (``us.``, ``eu.``, ``apac.``, ``jp.``, ``au.``, ``global.`` …)
is dropped and the base model's key applies, so ``global.anthropic.claude-haiku-4-5-…`` costs
what ``anthropic.claude-haiku-4-5`` does. An ARN is priced by the id after its last ``/``.

From Claude Sonnet 4.5, Haiku 4.5 and Opus 4.5 on, AWS prices the geographic (regional)
profiles about 10% above the global ones (its global cross-Region inference page: "approximately
10% savings on both input and output token pricing compared to geographic cross-Region
inference"): the base keys hold the global price, the ``us.`` / ``eu.`` / ``jp.`` / ``au.`` …
keys that price plus 10%. A file that sets a base key replaces those default profile keys too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from media_enrichment.catalog import Catalog
from media_enrichment.errors import ConfigError, ImageError
from media_enrichment.images import inspect_image
from media_enrichment.tokens import image_tokens


@dataclass(frozen=True)
class ModelPrice:
    """USD per million input/output tokens, and per image for embedding models."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    per_image: float = 0.0

    def cost(self, *, input_tokens: int = 0, output_tokens: int = 0, images: int = 0) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6 + images * self.per_image


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "anthropic.claude-3-haiku": ModelPrice(0.25, 1.25),
    "anthropic.claude-3-5-haiku": ModelPrice(0.80, 4.00),
    "anthropic.claude-haiku-4-5": ModelPrice(1.00, 5.00),
    "anthropic.claude-3-sonnet": ModelPrice(3.00, 15.00),
    "anthropic.claude-3-5-sonnet": ModelPrice(3.00, 15.00),
    "anthropic.claude-3-7-sonnet": ModelPrice(3.00, 15.00),
    "anthropic.claude-sonnet-4": ModelPrice(3.00, 15.00),
    "anthropic.claude-3-opus": ModelPrice(15.00, 75.00),
    "anthropic.claude-opus-4": ModelPrice(15.00, 75.00),  # Opus 4 and 4.1
    "amazon.titan-embed-image-v1": ModelPrice(input_per_mtok=0.80, per_image=0.00006),
    "local/": ModelPrice(),  # the offline provider costs nothing
}

_GEOGRAPHIES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.", "in.")

#: Claude 4.5+ list prices, which the global profile (``global.``) pays.
_CLAUDE_GLOBAL_PRICED: dict[str, ModelPrice] = {
    "anthropic.claude-haiku-4-5": ModelPrice(1.00, 5.00),
    "anthropic.claude-sonnet-4-5": ModelPrice(3.00, 15.00),
    "anthropic.claude-sonnet-4-6": ModelPrice(3.00, 15.00),
    "anthropic.claude-opus-4-5": ModelPrice(5.00, 25.00),
    "anthropic.claude-opus-4-6": ModelPrice(5.00, 25.00),
}
#: Geographic profiles of those models cost about 10% more than the global one.
REGIONAL_PROFILE_PREMIUM = 1.10
_REGIONAL_GEOGRAPHIES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "in.")

DEFAULT_PRICES.update(_CLAUDE_GLOBAL_PRICED)
DEFAULT_PRICES.update(
    {
        geography + key: ModelPrice(
            round(price.input_per_mtok * REGIONAL_PROFILE_PREMIUM, 6),
            round(price.output_per_mtok * REGIONAL_PROFILE_PREMIUM, 6),
        )
        for key, price in _CLAUDE_GLOBAL_PRICED.items()
        for geography in _REGIONAL_GEOGRAPHIES
    }
)


#: Bedrock batch inference is priced at 50% of on-demand for the models it serves (AWS, "Capacity,
#: Limits, and Cost Optimization", https://docs.aws.amazon.com/bedrock/latest/userguide/capacity-limits-cost-optimization.html:
#: "Batch ... 50% cost savings vs on-demand"; the pricing page, https://aws.amazon.com/bedrock/pricing/,
#: lists each model's batch column). Batch prices are keys ``batch:<model prefix>`` of the same table
#: (a price file may set them too); a model without one has no batch estimate.
BATCH_PREFIX = "batch:"
BATCH_DISCOUNT = 0.5
_BATCH_PRICED = ("anthropic.claude-haiku-4-5", "amazon.titan-embed-image-v1")


def _half(price: ModelPrice) -> ModelPrice:
    return ModelPrice(
        round(price.input_per_mtok * BATCH_DISCOUNT, 6), round(price.output_per_mtok * BATCH_DISCOUNT, 6),
        round(price.per_image * BATCH_DISCOUNT, 9),
    )


DEFAULT_PRICES.update(
    {
        BATCH_PREFIX + key: _half(price)
        for key, price in list(DEFAULT_PRICES.items())
        if any(key.endswith(model) or key == model for model in _BATCH_PRICED)
    }
)


def load_prices(path: Path | None = None) -> dict[str, ModelPrice]:
    """The default price table, updated with the entries of a JSON file.

    Args:
        path: a JSON object of ``model-prefix -> {input_per_mtok, output_per_mtok, per_image}``.

    Returns:
        The merged table.
    """
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    try:
        entries = json.loads(Path(path).read_text())
        given = {key: ModelPrice(**value) for key, value in entries.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"price file {path} is not a JSON object of model prices: {exc}") from exc
    # A base key of the file replaces the default profile keys derived from it, unless it sets them too.
    for key in given:
        for geography in _GEOGRAPHIES:
            if geography + key not in given:
                prices.pop(geography + key, None)
    prices.update(given)
    return prices


def price_for(model_id: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of a model id, inference profile id or ARN.

    Args:
        model_id: e.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0``.
        prices: the price table (``load_prices``).

    Returns:
        The longest key matching the id itself (a profile-specific price), else the longest
        matching the id without its profile geography (the base model's price); None if the
        table knows neither.
    """
    model = model_id.strip()
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    candidates = [model]
    for geography in _GEOGRAPHIES:
        if model.startswith(geography):
            candidates.append(model[len(geography) :])
            break
    for candidate in candidates:
        matches = [key for key in prices if candidate.startswith(key)]
        if matches:
            return prices[max(matches, key=len)]
    return None


def batch_price_for(model_id: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The batch inference price of a model (the table's ``batch:`` keys, matched as ``price_for``
    matches), or None when the table has none (no local model has one: it costs nothing anyway)."""
    if model_id.startswith("local/"):
        return ModelPrice()
    batch = {key[len(BATCH_PREFIX) :]: price for key, price in prices.items() if key.startswith(BATCH_PREFIX)}
    return price_for(model_id, batch)


def run_cost(
    *, enrichment_model: str, embedding_model: str, input_tokens: int, output_tokens: int, images: int,
    prices: Mapping[str, ModelPrice], batch: bool = False,
) -> float | None:
    """Estimated USD of a run's calls, or None when a model's price is unknown.

    ``batch``: at the models' batch inference prices (``batch_price_for``) instead of on-demand.
    """
    lookup = batch_price_for if batch else price_for
    describe = lookup(enrichment_model, prices)
    embed = lookup(embedding_model, prices)
    if describe is None or embed is None:
        return None
    return describe.cost(input_tokens=input_tokens, output_tokens=output_tokens) + embed.cost(images=images)


@dataclass(frozen=True)
class CatalogEstimate:
    """What enriching a catalogue would cost, computed without calling any model."""

    images: int
    unreadable: int
    image_tokens: int
    prompt_tokens: int
    output_tokens: int
    cost_usd: float | None
    #: The same work through Bedrock batch inference (None: no batch price for a model).
    batch_cost_usd: float | None = None

    @property
    def input_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens


def estimate_catalog(
    catalog: Catalog,
    *,
    read: Callable[[str], bytes],
    enrichment_model: str,
    embedding_model: str,
    prompt_tokens_per_image: int,
    output_tokens_per_image: int = 300,
    prices: Mapping[str, ModelPrice],
    workers: int = 8,
) -> CatalogEstimate:
    """Estimate tokens and cost from each image's size as it would be sent.

    Args:
        catalog: the catalogue.
        read: reads one ``source_uri``.
        enrichment_model: the describer's model id.
        embedding_model: the embedder's model id.
        prompt_tokens_per_image: text tokens sent with every image (prompt and tool schema).
        output_tokens_per_image: expected answer length.
        prices: the price table.
        workers: threads reading images.

    Returns:
        The estimate; images that cannot be read are counted, not priced.
    """

    def tokens(uri: str) -> int | None:
        try:
            facts = inspect_image(read(uri))
        except ImageError:
            return None
        return image_tokens(facts.width, facts.height)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        counted = list(pool.map(tokens, catalog.frame["source_uri"]))
    good = [t for t in counted if t is not None]
    images = len(good)
    prompt = images * prompt_tokens_per_image
    output = images * output_tokens_per_image
    work = {
        "enrichment_model": enrichment_model, "embedding_model": embedding_model, "input_tokens": sum(good) + prompt,
        "output_tokens": output, "images": images, "prices": prices,
    }
    return CatalogEstimate(
        images=images, unreadable=len(counted) - images, image_tokens=sum(good),
        prompt_tokens=prompt, output_tokens=output, cost_usd=run_cost(**work), batch_cost_usd=run_cost(**work, batch=True),
    )
