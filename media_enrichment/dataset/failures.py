"""Writing the failures table: this run's failures upserted, images that now succeeded dropped.

One MERGE per run: a new failure is inserted, a known one has its ``attempts`` added to, and the
row of an image this run enriched is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable

from media_enrichment.dataset.commits import DatasetCommits
from media_enrichment.schema import FAILURES_SCHEMA

__all__ = ["FailureWrites"]


class FailureWrites(DatasetCommits):
    """The failures table's one write."""

    def record_failures(
        self, failures: pa.Table, *, resolved_ids: Iterable[str], metadata: Mapping[str, Any]
    ) -> int | None:
        """Upsert this run's failures and drop the rows of images that now succeeded, in one commit.

        A failure row that already exists has its ``attempts`` added to.

        Args:
            failures: rows with ``schema.FAILURES_SCHEMA``.
            resolved_ids: image ids enriched by this run.
            metadata: commit metadata.

        Returns:
            The failures table's new version, or None when nothing changed.
        """
        failures = failures.select(FAILURES_SCHEMA.names).cast(FAILURES_SCHEMA)
        resolved = sorted(set(resolved_ids) - set(failures.column("image_id").to_pylist()))
        existing = self._open(self.failures_uri)
        if existing is not None and resolved:
            known = set(existing.to_pyarrow_table(columns=["image_id"]).column("image_id").to_pylist())
            resolved = [i for i in resolved if i in known]
        else:
            resolved = []
        if failures.num_rows == 0 and not resolved:
            return None
        flags = pa.array([False] * failures.num_rows + [True] * len(resolved))
        padding = FAILURES_SCHEMA.empty_table()
        if resolved:
            padding = pa.table(
                {name: pa.nulls(len(resolved), type=field.type) for name, field in zip(FAILURES_SCHEMA.names, FAILURES_SCHEMA)}
            ).set_column(0, FAILURES_SCHEMA.field("image_id"), pa.array(resolved, pa.string()))
        source = pa.concat_tables([failures, padding.cast(FAILURES_SCHEMA)]).append_column("resolved", flags)
        return self._upsert(self.failures_uri, lambda: source, metadata=metadata, build=self._failures_merge)

    @staticmethod
    def _failures_merge(table: DeltaTable, rows: pa.Table, props: CommitProperties) -> None:
        columns = {name: f"s.{name}" for name in FAILURES_SCHEMA.names}
        (
            table.merge(rows, predicate="t.image_id = s.image_id", source_alias="s", target_alias="t", commit_properties=props)
            .when_matched_delete(predicate="s.resolved")
            .when_matched_update({**columns, "attempts": "t.attempts + s.attempts"}, predicate="NOT s.resolved")
            .when_not_matched_insert(columns, predicate="NOT s.resolved")
            .execute()
        )
