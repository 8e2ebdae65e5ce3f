"""The dataset's vectors in memory, ranked by cosine similarity to a query vector.

``VectorIndex`` loads the assets table's vectors once into a float32 matrix whose rows are
L2-normalised, so a query is one matrix-vector product (cosine similarity) followed by
``np.argpartition`` for the top k: no Python loop over rows at query time. Tag and keyword
filters (``filters.RowFilter``) become a boolean mask before ranking.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from media_enrichment.dataset import Dataset
from media_enrichment.errors import DatasetError
from media_enrichment.search.filters import RowFilter

__all__ = ["INDEX_COLUMNS", "Hit", "QueryFilters", "VectorIndex"]

#: Columns of the assets table an index loads.
INDEX_COLUMNS = ["image_id", "title", "tags", "keywords", "embedding", "embedding_model", "embedding_dim"]


class QueryFilters(TypedDict, total=False):
    """The filters every query takes, applied before ranking (see ``VectorIndex.mask``)."""

    tags: Iterable[str] | str | None  # only rows carrying all these tags (case-insensitive)
    keywords: Iterable[str] | str | None  # only rows carrying all these keywords (whole keyword)
    exclude: Iterable[str] | None  # image ids never returned


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
        self._filter = RowFilter(self.tags, self.keywords)

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
        excluded = [self._rows[i] for i in (exclude or ()) if i in self._rows]
        return self._filter.mask(tags=tags, keywords=keywords, exclude_rows=excluded)

    # -- queries -----------------------------------------------------------------------------

    def search_vector(self, vector: np.ndarray, *, k: int = 10, **filters: Unpack[QueryFilters]) -> list[Hit]:
        """The k rows most similar (cosine) to a vector.

        Args:
            vector: a query vector of length ``dim`` (normalised here).
            k: how many hits at most.
            filters: ``tags``, ``keywords``, ``exclude`` (see ``QueryFilters``).

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
        keep = self.mask(**filters)
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

