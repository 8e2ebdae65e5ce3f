"""Text, image and "more like this" queries over the dataset's vectors.

``VectorIndex`` loads the assets table's vectors once into a float32 matrix whose rows are
L2-normalised, so a query is one matrix-vector product (cosine similarity) followed by
``np.argpartition`` for the top k: no Python loop over rows at query time. Tag and keyword
filters become a boolean mask (from an inverted index built on first use) before ranking.

A query vector must come from the model that made the stored vectors: ``embedder_for`` builds
that embedder from the stored model id, and ``search_text``/``search_image`` refuse an embedder
whose model id or vector size differs from the index's.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import ConfigError, DatasetError
from media_enrichment.providers.base import Embedder

#: Columns of the assets table an index loads.
INDEX_COLUMNS = ["image_id", "title", "tags", "keywords", "embedding", "embedding_model", "embedding_dim"]

#: Prefix of the local provider's model ids (``local/visual-embed-v1-1024``).
LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class Hit:
    """One search result."""

    image_id: str
    title: str
    score: float  # cosine similarity to the query, in [-1, 1]
    tags: tuple[str, ...]
    keywords: tuple[str, ...]


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """A new float32 array whose rows are ``matrix``'s rows scaled to unit L2 norm."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
    bad = (norms == 0) | ~np.isfinite(norms)
    if bad.any():
        raise DatasetError(f"{int(bad.sum())} stored vector(s) are all zeros or not finite; they cannot be searched")
    return (matrix / norms).astype(np.float32, copy=False)


def _as_strings(values: Iterable[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip().casefold() for v in values if v and v.strip()]


class VectorIndex:
    """The dataset's vectors in memory, with their ids, titles, tags and keywords.

    Build it with ``from_dataset`` (or ``from_arrays`` for vectors from elsewhere); it is
    read-only afterwards and safe to share between threads.
    """

    def __init__(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        embedding_model: str,
        titles: Sequence[str] | None = None,
        tags: Sequence[Sequence[str]] | None = None,
        keywords: Sequence[Sequence[str]] | None = None,
        normalised: bool = False,
    ):
        """Wrap vectors (see ``from_arrays``, which is the public way to call this)."""
        ids = np.asarray(list(ids), dtype=object)
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise DatasetError(f"expected {len(ids)} vectors as a 2-d array, got shape {matrix.shape}")
        if len(ids) == 0:
            raise DatasetError("the dataset has no images to search: run an enrichment first")
        if len(set(ids.tolist())) != len(ids):
            raise DatasetError("image ids must be unique")
        if not normalised:
            matrix = _normalise_rows(matrix)
        self.matrix = np.ascontiguousarray(matrix)
        self.matrix.setflags(write=False)
        self.ids = ids
        self.embedding_model = embedding_model
        self.dim = int(matrix.shape[1])
        n = len(ids)
        self.titles = list(titles) if titles is not None else [""] * n
        self.tags = [tuple(t) for t in tags] if tags is not None else [()] * n
        self.keywords = [tuple(k) for k in keywords] if keywords is not None else [()] * n
        if not (len(self.titles) == len(self.tags) == len(self.keywords) == n):
            raise DatasetError("ids, vectors, titles, tags and keywords must have the same length")
        self._rows = {image_id: row for row, image_id in enumerate(ids.tolist())}

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        embedding_model: str,
        titles: Sequence[str] | None = None,
        tags: Sequence[Sequence[str]] | None = None,
        keywords: Sequence[Sequence[str]] | None = None,
    ) -> VectorIndex:
        """An index over vectors that did not come from a dataset (benchmarks, tests).

        Args:
            ids: unique image ids, one per row.
            vectors: an ``(n, dim)`` array; rows are L2-normalised into a float32 copy.
            embedding_model: the model id that made the vectors.
            titles, tags, keywords: optional per-row metadata.

        Returns:
            The index.

        Raises:
            DatasetError: no rows, duplicate ids, shapes that do not match, zero vectors.
        """
        return cls(ids, vectors, embedding_model=embedding_model, titles=titles, tags=tags, keywords=keywords)

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, *, version: int | None = None, image_ids: Sequence[str] | None = None
    ) -> VectorIndex:
        """Load the assets table's vectors and metadata.

        Args:
            dataset: the dataset handle.
            version: a table version (time travel); the latest when None.
            image_ids: load only these rows (the scan is filtered, not the loaded table).

        Returns:
            The index.

        Raises:
            DatasetError: no assets table, no rows, vectors from more than one model or of more
                than one size, vectors whose length differs from their ``embedding_dim``.
        """
        delta = dataset.assets_table(version=version)
        if image_ids is None:
            table = delta.to_pyarrow_table(columns=INDEX_COLUMNS)
        else:  # batch by batch, so that memory holds only the chosen rows
            wanted = pa.array(list(image_ids), pa.string())
            kept = [
                batch.filter(pc.is_in(batch.column("image_id"), value_set=wanted.cast(batch.schema.field("image_id").type)))
                for batch in delta.to_pyarrow_dataset().to_batches(columns=INDEX_COLUMNS)
            ]
            table = pa.Table.from_batches(kept) if kept else delta.to_pyarrow_table(columns=INDEX_COLUMNS).slice(0, 0)
        where = f"{dataset.root}" + (f" (version {version})" if version is not None else "")
        if table.num_rows == 0:
            raise DatasetError(f"the dataset at {where} has no images to search: run an enrichment first")
        models = table.group_by(["embedding_model", "embedding_dim"]).aggregate([("image_id", "count")]).to_pylist()
        if len(models) != 1:
            listed = ", ".join(
                f"{m['embedding_model']} ({m['embedding_dim']} dims): {m['image_id_count']} rows" for m in models
            )
            raise DatasetError(
                f"the dataset at {where} mixes vectors of different models or sizes ({listed}); "
                "they are not comparable: enrich it again with one embedding model (run --force)"
            )
        model, dim = models[0]["embedding_model"], models[0]["embedding_dim"]
        if model is None or dim is None:
            raise DatasetError(f"the dataset at {where} has rows without an embedding model or size")
        embeddings = table.column("embedding").combine_chunks()
        if embeddings.null_count:
            raise DatasetError(f"{embeddings.null_count} row(s) of {where} have no vector")
        lengths = pc.list_value_length(embeddings)
        if pc.min(lengths).as_py() != dim or pc.max(lengths).as_py() != dim:
            raise DatasetError(f"vectors of {where} do not all have embedding_dim={dim} values")
        values = pc.list_flatten(embeddings).to_numpy(zero_copy_only=False)
        matrix = _normalise_rows(np.asarray(values, dtype=np.float32).reshape(table.num_rows, dim))
        return cls(
            table.column("image_id").to_pylist(),
            matrix,
            embedding_model=model,
            titles=[t or "" for t in table.column("title").to_pylist()],
            tags=[t or () for t in table.column("tags").to_pylist()],
            keywords=[k or () for k in table.column("keywords").to_pylist()],
            normalised=True,
        )

    # -- lookups -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def row(self, image_id: str) -> int:
        """The row of an image id.

        Raises:
            DatasetError: the id is not in the dataset (the message suggests close ids).
        """
        try:
            return self._rows[image_id]
        except KeyError:
            close = difflib.get_close_matches(str(image_id), list(self._rows), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise DatasetError(
                f"unknown image id {image_id!r}: not among the {len(self)} images of the index{hint}"
            ) from None

    def vector(self, image_id: str) -> np.ndarray:
        """The stored (unit-norm) vector of an image."""
        return self.matrix[self.row(image_id)]

    @cached_property
    def _tag_rows(self) -> dict[str, np.ndarray]:
        return _inverted(self.tags)

    @cached_property
    def _keyword_rows(self) -> dict[str, np.ndarray]:
        return _inverted(self.keywords)

    def mask(
        self,
        *,
        tags: Iterable[str] | str | None = None,
        keywords: Iterable[str] | str | None = None,
        exclude: Iterable[str] | None = None,
    ) -> np.ndarray | None:
        """Rows that carry every given tag and keyword (case-insensitive) and are not excluded.

        Returns:
            A boolean array over rows, or None when there is nothing to filter.
        """
        wanted_tags, wanted_keywords = _as_strings(tags), _as_strings(keywords)
        excluded = [self._rows[i] for i in (exclude or ()) if i in self._rows]
        if not (wanted_tags or wanted_keywords or excluded):
            return None
        keep = np.ones(len(self), dtype=bool)
        for lookup, wanted in ((self._tag_rows, wanted_tags), (self._keyword_rows, wanted_keywords)):
            for value in wanted:
                present = np.zeros(len(self), dtype=bool)
                present[lookup.get(value, np.empty(0, dtype=np.int64))] = True
                keep &= present
        keep[excluded] = False
        return keep

    # -- queries -----------------------------------------------------------------------------

    def search_vector(
        self,
        vector: np.ndarray,
        *,
        k: int = 10,
        tags: Iterable[str] | str | None = None,
        keywords: Iterable[str] | str | None = None,
        exclude: Iterable[str] | None = None,
    ) -> list[Hit]:
        """The k rows most similar (cosine) to a vector.

        Args:
            vector: a query vector of length ``dim`` (normalised here).
            k: how many hits at most.
            tags: only rows carrying all these tags (case-insensitive).
            keywords: only rows carrying all these keywords (case-insensitive, whole keyword).
            exclude: image ids never returned.

        Returns:
            Hits, best first (ties broken by row order).

        Raises:
            ValueError: k < 1.
            DatasetError: the vector's length differs from the index's, or it is zero.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query = np.asarray(vector, dtype=np.float32).ravel()
        if query.shape[0] != self.dim:
            raise DatasetError(
                f"the query vector has {query.shape[0]} values but the dataset's vectors "
                f"({self.embedding_model}) have {self.dim}"
            )
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0:
            raise DatasetError("the query vector is zero or not finite")
        scores = self.matrix @ (query / norm)
        keep = self.mask(tags=tags, keywords=keywords, exclude=exclude)
        rows = np.arange(len(self)) if keep is None else np.flatnonzero(keep)
        candidates = scores[rows]
        if k < len(rows):
            top = np.argpartition(-candidates, k - 1)[:k]
            rows, candidates = rows[top], candidates[top]
        order = np.lexsort((rows, -candidates))
        return [self._hit(int(rows[i]), float(candidates[i])) for i in order]

    def _hit(self, row: int, score: float) -> Hit:
        return Hit(
            image_id=str(self.ids[row]),
            title=self.titles[row],
            score=score,
            tags=tuple(self.tags[row]),
            keywords=tuple(self.keywords[row]),
        )


def _inverted(values_per_row: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """casefolded value -> sorted rows carrying it (built once, on the first filtered query)."""
    lengths = np.fromiter((len(v) for v in values_per_row), dtype=np.int64, count=len(values_per_row))
    rows = np.repeat(np.arange(len(values_per_row)), lengths)
    flat = np.array([value.casefold() for values in values_per_row for value in values], dtype=object)
    if flat.size == 0:
        return {}
    keys, inverse = np.unique(flat.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    return {
        str(key): np.unique(rows[order[bounds[i] : bounds[i + 1]]]) for i, key in enumerate(keys)
    }


# -- the query embedder -----------------------------------------------------------------------


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
        from media_enrichment.providers.embedders import bedrock_embedder_class

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
    index: VectorIndex,
    embedder: Embedder,
    text: str,
    *,
    k: int = 10,
    tags: Iterable[str] | str | None = None,
    keywords: Iterable[str] | str | None = None,
    exclude: Iterable[str] | None = None,
) -> list[Hit]:
    """Images closest to a text query.

    Args:
        index: the index.
        embedder: the dataset's embedder (see ``embedder_for``).
        text: the query; the local embedder understands colour words only.
        k, tags, keywords, exclude: as ``VectorIndex.search_vector``.

    Returns:
        Hits, best first.

    Raises:
        ConfigError: the embedder is not the dataset's.
        ValueError: an empty query.
    """
    if not text or not text.strip():
        raise ValueError("the query text is empty")
    check_embedder(index, embedder)
    return index.search_vector(embedder.embed_text(text), k=k, tags=tags, keywords=keywords, exclude=exclude)


def search_image(
    index: VectorIndex,
    embedder: Embedder,
    data: bytes,
    *,
    k: int = 10,
    tags: Iterable[str] | str | None = None,
    keywords: Iterable[str] | str | None = None,
    exclude: Iterable[str] | None = None,
) -> list[Hit]:
    """Images closest to an image file's bytes (prepared for the embedder's limits first).

    Args:
        index: the index.
        embedder: the dataset's embedder (see ``embedder_for``).
        data: the image file's bytes.
        k, tags, keywords, exclude: as ``VectorIndex.search_vector``.

    Returns:
        Hits, best first.

    Raises:
        ConfigError: the embedder is not the dataset's.
        ImageError: the bytes are not a usable image.
    """
    from media_enrichment.images import prepare_image

    check_embedder(index, embedder)
    vector = embedder.embed_query_image(prepare_image(data, embedder.image_limits))
    return index.search_vector(vector, k=k, tags=tags, keywords=keywords, exclude=exclude)


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
