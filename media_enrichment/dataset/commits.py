"""Committing to a Delta table: commit metadata, and creating or merging with retries on conflict.

``DatasetCommits._upsert`` is the one write path of both tables: it creates the table from the
source on the first run, else applies the table's own write (a predicate overwrite of assets, a
merge of failures), and retries on a new version when another writer committed first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from media_enrichment.dataset.tables import DatasetTables
from media_enrichment.errors import DatasetError

__all__ = ["DatasetCommits"]

_COMMIT_ATTEMPTS = 5


def _commit_properties(metadata: Mapping[str, Any]) -> CommitProperties:
    # Delta's commitInfo holds strings best; keep nested values readable as JSON.
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}
    return CommitProperties(custom_metadata=flat)


def _without_resolved(source: Any) -> Any:
    """A new failures table has nothing to resolve: keep only the failure rows."""
    if isinstance(source, pa.Table) and "resolved" in source.column_names:
        return source.filter(pc.invert(source.column("resolved"))).drop_columns(["resolved"])
    return source


class DatasetCommits(DatasetTables):
    """The commit loop shared by the writes of both tables."""

    def _upsert(self, uri: str, source: Callable[[], Any], *, metadata: Mapping[str, Any], build) -> int:
        """Create the table from ``source()`` or merge ``source()`` into it, retrying on conflicts.

        ``source`` is called once per attempt: a stream can be read only once.
        """
        props = _commit_properties(metadata)
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            table = self._open(uri)
            try:
                if table is None:
                    write_deltalake(
                        uri, _without_resolved(source()), mode="error", commit_properties=props,
                        storage_options=self.storage_options or None,
                    )
                    return self._open(uri).version()
                build(table, source(), props)
                return table.version()
            except CommitFailedError:
                # Another writer committed first: reload the table and merge again.
                if attempt == _COMMIT_ATTEMPTS:
                    raise
                time.sleep(0.05 * 2**attempt)
            except Exception as exc:
                if table is None and "already exists" in str(exc).lower():
                    continue  # another run created the table meanwhile; merge into it
                raise
        raise DatasetError(f"could not commit to {uri}")  # pragma: no cover - loop always returns or raises
