"""Text, image and "more like this" queries, with the embedder that makes them comparable.

A query vector must come from the model that made the stored vectors: ``embedder_for`` builds
that embedder from the index's stored model id (``local/...`` is the local provider, anything
else Bedrock), and ``search_text``/``search_image`` refuse an embedder whose model id or vector
size differs from the index's (``check_embedder``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Unpack

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.providers.base import Embedder
from media_enrichment.search.index import Hit, QueryFilters, VectorIndex

__all__ = ["LOCAL_PREFIX", "check_embedder", "embedder_for", "provider_of", "search_image", "search_text", "similar"]

#: Prefix of the local provider's model ids (``local/visual-embed-v1-1024``).
LOCAL_PREFIX = "local/"


def provider_of(model_id: str) -> str:
    """``local`` for the local provider's model ids (``local/...``), else ``bedrock``."""
    return "local" if model_id.startswith(LOCAL_PREFIX) else "bedrock"


def embedder_for(index: VectorIndex, settings: Settings, *, provider: str | None = None) -> Embedder:
    """The embedder that makes query vectors comparable with the index's stored vectors.

    The provider is inferred from the stored model id (``local/...`` is the local provider,
    anything else Bedrock); model id and vector size are the stored ones, whatever
    ``settings.embedder_model_id``/``embedding_dim`` say. AWS options come from ``settings``.

    Args:
        index: the index to query.
        settings: settings for the provider's client (region, profile, retries).
        provider: a provider the caller asked for; refused if it is not the dataset's.

    Returns:
        An embedder whose ``model_id`` and ``dim`` are the index's.

    Raises:
        ConfigError: the requested provider is not the one that made the vectors, or this
            version of the library cannot make vectors of the stored model.
    """
    inferred = provider_of(index.embedding_model)
    if provider is not None and provider != inferred:
        raise ConfigError(
            f"the dataset's vectors were made by {index.embedding_model!r} ({inferred} provider); "
            f"queries embedded by the {provider} provider would not be comparable"
        )
    if inferred == "local":
        from media_enrichment.providers.local import LOCAL_EMBEDDING_DIMS, LocalEmbedder

        if index.dim not in LOCAL_EMBEDDING_DIMS:
            raise ConfigError(f"the local embedder makes {LOCAL_EMBEDDING_DIMS} dims, the dataset has {index.dim}")
        embedder: Embedder = LocalEmbedder(dim=index.dim)
    else:
        from media_enrichment.providers import build_providers
        from media_enrichment.providers.bedrock import bedrock_embedder_class

        made_by = bedrock_embedder_class(index.embedding_model)  # ConfigError for a model we cannot call
        if index.dim not in made_by.dims:
            raise ConfigError(
                f"{index.embedding_model} makes {', '.join(map(str, made_by.dims))} dims, the dataset has {index.dim}"
            )
        query_settings = settings.model_copy(
            update={"provider": "bedrock", "embedder_model_id": index.embedding_model, "embedding_dim": index.dim}
        )
        embedder = build_providers(query_settings)[1]
    check_embedder(index, embedder)
    return embedder


def check_embedder(index: VectorIndex, embedder: Embedder) -> None:
    """Refuse an embedder whose vectors are not comparable with the index's.

    Raises:
        ConfigError: model id or vector size differs from the stored ones.
    """
    if embedder.model_id != index.embedding_model or int(embedder.dim) != index.dim:
        raise ConfigError(
            f"query embedder {embedder.model_id!r} ({embedder.dim} dims) does not match the dataset's "
            f"vectors {index.embedding_model!r} ({index.dim} dims); use embedder_for(index, settings)"
        )


def search_text(
    index: VectorIndex, embedder: Embedder, text: str, *, k: int = 10, **filters: Unpack[QueryFilters]
) -> list[Hit]:
    """Images closest to a text query.

    Args:
        index: the index.
        embedder: the dataset's embedder (see ``embedder_for``).
        text: the query; the local embedder understands colour words only.
        k, filters: as ``VectorIndex.search_vector``.

    Returns:
        Hits, best first.

    Raises:
        ConfigError: the embedder is not the dataset's.
        ValueError: an empty query.
    """
    if not text or not text.strip():
        raise ValueError("the query text is empty")
    check_embedder(index, embedder)
    return index.search_vector(embedder.embed_text(text), k=k, **filters)


def search_image(
    index: VectorIndex, embedder: Embedder, data: bytes, *, k: int = 10, **filters: Unpack[QueryFilters]
) -> list[Hit]:
    """Images closest to an image file's bytes (prepared for the embedder's limits first).

    Args:
        data: the image file's bytes.
        index, embedder, k, filters: as ``search_text``.

    Returns:
        Hits, best first.

    Raises:
        ConfigError: the embedder is not the dataset's.
        ImageError: the bytes are not a usable image.
    """
    from media_enrichment.images import prepare_image

    check_embedder(index, embedder)
    vector = embedder.embed_query_image(prepare_image(data, embedder.image_limits))
    return index.search_vector(vector, k=k, **filters)


def similar(
    index: VectorIndex,
    image_id: str,
    k: int = 10,
    *,
    tags: Iterable[str] | str | None = None,
    keywords: Iterable[str] | str | None = None,
) -> list[Hit]:
    """Images closest to a stored image (the image itself excluded).

    Args:
        index: the index.
        image_id: an image of the dataset.
        k: how many hits at most.
        tags, keywords: as ``VectorIndex.search_vector``.

    Returns:
        Hits, best first.

    Raises:
        DatasetError: the id is not in the dataset.
    """
    return index.search_vector(index.vector(image_id), k=k, tags=tags, keywords=keywords, exclude=[image_id])
