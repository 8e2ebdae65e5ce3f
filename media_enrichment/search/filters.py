"""Tag and keyword filters over an index's rows, as a boolean mask applied before ranking.

``RowFilter`` builds, on the first filtered query, an inverted index per field (casefolded
value -> the sorted rows carrying it); a filter is then a few array lookups, not a loop over
rows. Matching is case-insensitive and on whole values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property

import numpy as np

__all__ = ["RowFilter"]


def _casefolded(values: Iterable[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip().casefold() for v in values if v and v.strip()]


class RowFilter:
    """Which rows carry given tags and keywords. Read-only; safe to share between threads."""

    def __init__(self, tags: Sequence[Sequence[str]], keywords: Sequence[Sequence[str]]):
        """Filter rows by their tags and keywords (one sequence of values per row)."""
        self.tags = tags
        self.keywords = keywords

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
        exclude_rows: Sequence[int] = (),
    ) -> np.ndarray | None:
        """Rows that carry every given tag and keyword (case-insensitive), less ``exclude_rows``.

        Returns:
            A boolean array over rows, or None when there is nothing to filter.
        """
        wanted_tags, wanted_keywords = _casefolded(tags), _casefolded(keywords)
        excluded = list(exclude_rows)
        if not (wanted_tags or wanted_keywords or excluded):
            return None
        keep = np.ones(len(self.tags), dtype=bool)
        for lookup, wanted in ((self._tag_rows, wanted_tags), (self._keyword_rows, wanted_keywords)):
            for value in wanted:
                present = np.zeros(len(self.tags), dtype=bool)
                present[lookup.get(value, np.empty(0, dtype=np.int64))] = True
                keep &= present
        keep[excluded] = False
        return keep


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
