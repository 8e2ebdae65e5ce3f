"""Token and cost estimates: a per-model price table, image token counts, catalogue estimates.

Prices are list prices for on-demand use in US regions as published by AWS (USD); they change
and differ by region, so they are defaults to override with a JSON file of your own
(``MEDIA_ENRICH_PRICE_FILE`` / ``--prices``)::

    {"anthropic.claude-3-haiku": {"input_per_mtok": 0.25, "output_per_mtok": 1.25},
     "amazon.titan-embed-image-v1": {"per_image": 0.00006, "input_per_mtok": 0.8}}

Keys match model ids by prefix, after dropping a cross-region inference profile's geography
(``us.``, ``eu.``, ``apac.``, ``global.``); the longest matching key wins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from media_enrichment.catalog import Catalog
from media_enrichment.errors import ConfigError, ImageError
from media_enrichment.images import CLAUDE_LIMITS, ImageLimits, inspect_image, target_size


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
    "amazon.titan-embed-image-v1": ModelPrice(input_per_mtok=0.80, per_image=0.00006),
    "local/": ModelPrice(),  # the offline provider costs nothing
}

_GEOGRAPHIES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.")


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
        prices.update({key: ModelPrice(**value) for key, value in entries.items()})
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"price file {path} is not a JSON object of model prices: {exc}") from exc
    return prices


def price_for(model_id: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of a model id (longest prefix match), or None if the table does not know it."""
    bare = model_id
    for geography in _GEOGRAPHIES:
        if bare.startswith(geography):
            bare = bare[len(geography) :]
            break
    matches = [key for key in prices if bare.startswith(key)]
    return prices[max(matches, key=len)] if matches else None


def run_cost(
    *, enrichment_model: str, embedding_model: str, input_tokens: int, output_tokens: int, images: int,
    prices: Mapping[str, ModelPrice],
) -> float | None:
    """Estimated USD of a run's calls, or None when a model's price is unknown."""
    describe = price_for(enrichment_model, prices)
    embed = price_for(embedding_model, prices)
    if describe is None or embed is None:
        return None
    return describe.cost(input_tokens=input_tokens, output_tokens=output_tokens) + embed.cost(images=images)


def image_tokens(width: int, height: int, limits: ImageLimits = CLAUDE_LIMITS) -> int:
    """Claude's input tokens for an image of this size once scaled to ``limits`` (about w*h/750)."""
    w, h = target_size(width, height, limits)
    return math.ceil(w * h / 750)


def text_tokens(text: str) -> int:
    """A rough token count for English text and JSON (about 3.5 characters a token)."""
    return math.ceil(len(text) / 3.5)


@dataclass(frozen=True)
class CatalogEstimate:
    """What enriching a catalogue would cost, computed without calling any model."""

    images: int
    unreadable: int
    image_tokens: int
    prompt_tokens: int
    output_tokens: int
    cost_usd: float | None

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
    cost = run_cost(
        enrichment_model=enrichment_model, embedding_model=embedding_model,
        input_tokens=sum(good) + prompt, output_tokens=output, images=images, prices=prices,
    )
    return CatalogEstimate(
        images=images, unreadable=len(counted) - images, image_tokens=sum(good),
        prompt_tokens=prompt, output_tokens=output, cost_usd=cost,
    )
