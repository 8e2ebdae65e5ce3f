"""Which embedder class a model id names, and the vector sizes it can make.

Settings validation and ``build_bedrock_providers`` both ask here, so a model id is mapped to
its embedder in one place, and each embedder's sizes are defined once, on its class (``dims``).
Provider modules are imported only when asked for.
"""

from __future__ import annotations

import re

from media_enrichment.errors import ConfigError
from media_enrichment.providers.base import Embedder

__all__ = ["bedrock_embedder_class", "embedder_class", "foundation_model_of"]

#: Geography prefixes of cross-Region inference profiles (``us.amazon.nova-...``).
_PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "global", "jp", "au", "ca")
_TITAN = re.compile(r"^amazon\.titan-embed-image-v\d+(:\d+)?$")
_NOVA = re.compile(r"^amazon\.nova-[a-z0-9.-]*multimodal-embeddings[a-z0-9.-]*(:\d+)?$")


def foundation_model_of(model_id: str) -> str:
    """The foundation model id inside an ARN or a cross-Region inference profile id.

    Args:
        model_id: a model id (``amazon.nova-2-multimodal-embeddings-v1:0``), a profile id
            (``us.amazon.nova-...``) or an ARN of either.

    Returns:
        The bare model id, e.g. ``amazon.nova-2-multimodal-embeddings-v1:0``.
    """
    base = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    head, _, rest = base.partition(".")
    return rest if rest and head in _PROFILE_PREFIXES else base


def bedrock_embedder_class(model_id: str) -> type[Embedder]:
    """The Bedrock embedder for a model id.

    Args:
        model_id: ``amazon.titan-embed-image-v1`` (Titan Multimodal Embeddings G1) or an Amazon
            Nova Multimodal Embeddings id (``amazon.nova-2-multimodal-embeddings-v1:0``), bare,
            as an inference profile id (``us.amazon...``) or as an ARN.

    Returns:
        ``BedrockEmbedder`` (Titan) or ``NovaEmbedder``.

    Raises:
        ConfigError: the id names neither model.
    """
    base = foundation_model_of(model_id) if isinstance(model_id, str) else ""
    if _TITAN.match(base):
        from media_enrichment.providers.bedrock import BedrockEmbedder

        return BedrockEmbedder
    if _NOVA.match(base):
        from media_enrichment.providers.nova import NovaEmbedder

        return NovaEmbedder
    raise ConfigError(
        f"embedder model id {model_id!r} is not a multimodal embeddings model this library can use: set "
        "MEDIA_ENRICH_EMBEDDER_MODEL_ID to amazon.titan-embed-image-v1 (Titan Multimodal Embeddings G1) or "
        "amazon.nova-2-multimodal-embeddings-v1:0 (Amazon Nova Multimodal Embeddings)"
    )


def embedder_class(provider: str, model_id: str) -> type[Embedder]:
    """The embedder a run of ``provider`` uses.

    Args:
        provider: ``local`` or ``bedrock``.
        model_id: the Bedrock embedding model id (ignored by the local provider).

    Returns:
        The embedder class; its ``dims`` are the vector sizes it can make.

    Raises:
        ConfigError: an unknown Bedrock model id.
    """
    if provider == "local":
        from media_enrichment.providers.local import LocalEmbedder

        return LocalEmbedder
    return bedrock_embedder_class(model_id)
