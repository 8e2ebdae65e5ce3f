"""Providers: wired in one place from the settings.

``build_providers`` builds a run's describer and embedder; ``embedder_class`` says which embedder
class a run uses, whose ``dims`` are the vector sizes it can make (settings validation and
search read them there). Bedrock is ``providers.bedrock`` (its ``__init__`` says where each
concern is), the offline provider ``providers.local``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from media_enrichment.config import Settings
from media_enrichment.providers.base import Describer, Description, Embedder

__all__ = ["Describer", "Description", "Embedder", "build_providers", "embedder_class"]


def build_providers(
    settings: Settings, *, limiters: Mapping[str, Any] | None = None, session: Any = None
) -> tuple[Describer, Embedder]:
    """Build the describer and embedder a run uses (one client shared by both for Bedrock).

    Args:
        settings: the run's settings (``provider`` picks the implementation).
        limiters: for Bedrock, rate limiters shared across runs and workers by name
            (``media_enrichment_prefect.tasks.limits.ensure_rate_limits(settings)``), used instead
            of local token buckets; ignored by the local provider.
        session: for Bedrock, the boto3 session to use (default: the standard credential chain).

    Returns:
        ``(describer, embedder)``.
    """
    if settings.provider == "local":
        from media_enrichment.providers.local import LocalDescriber, LocalEmbedder

        return LocalDescriber(), LocalEmbedder(dim=settings.embedding_dim)
    from media_enrichment.providers.bedrock import build_bedrock_providers

    return build_bedrock_providers(settings, limiters=limiters, session=session)


def embedder_class(provider: str, model_id: str) -> type[Embedder]:
    """The embedder a run of ``provider`` uses (its module is imported only when asked for).

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
    from media_enrichment.providers.bedrock import bedrock_embedder_class

    return bedrock_embedder_class(model_id)
