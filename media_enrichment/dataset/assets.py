"""Writing the assets table: upserts on ``image_id``, from a table in memory or streamed from Parquet.

Each upsert is one predicate overwrite (Delta's "replaceWhere") rather than a MERGE; see
``AssetWrites._replace_rows`` for why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from media_enrichment import storage
from media_enrichment.dataset.commits import DatasetCommits
from media_enrichment.errors import DatasetError
from media_enrichment.schema import ASSETS_SCHEMA

__all__ = ["AssetWrites"]


def _ids_predicate(ids: Iterable[str]) -> str:
    """A SQL predicate matching these image_ids (quotes doubled, as SQL string literals need)."""
    quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
    return f"image_id IN ({quoted})"


class AssetWrites(DatasetCommits):
    """Upserts into the assets table."""

    # -- writing ---------------------------------------------------------------------------

    def merge_assets(self, rows: pa.Table, *, metadata: Mapping[str, Any]) -> int | None:
        """Upsert rows into the assets table in one commit (the first run creates version 0).

        Args:
            rows: rows with the columns of ``schema.ASSETS_SCHEMA``, unique image_ids.
            metadata: commit metadata (run id, models, prompt version, counts).

        Returns:
            The new table version, or None when there was nothing to write.

        Raises:
            DatasetError: an image_id appears twice in ``rows``.
        """
        if rows.num_rows == 0:
            return None
        rows = rows.select(ASSETS_SCHEMA.names).cast(ASSETS_SCHEMA)
        return self._replace_rows(lambda: rows, rows.column("image_id").to_pylist(), metadata=metadata)

    def merge_assets_from_parquet(self, paths: Sequence[str | Path], *, metadata: Mapping[str, Any]) -> int | None:
        """Upsert the rows of Parquet files in one commit, streaming them batch by batch.

        Only the files' ``image_id`` column is read up front (for the commit's predicate); the
        rows are streamed to delta-rs's writer, so memory is bounded by a batch and the writer's
        buffers, not by the number of rows.

        Args:
            paths: Parquet files (local paths or ``s3://`` URIs) with the columns of
                ``schema.ASSETS_SCHEMA``, unique image_ids.
            metadata: commit metadata.

        Returns:
            The new table version, or None when the files hold no rows.

        Raises:
            DatasetError: an image_id appears twice across the files.
        """
        ids = [
            i
            for path in paths
            for i in storage.read_parquet(path, columns=["image_id"], options=self.storage_options).column(0).to_pylist()
        ]
        if not ids:
            return None

        def stream() -> pa.RecordBatchReader:
            def batches():
                for path in paths:
                    for batch in storage.parquet_file(path, options=self.storage_options).iter_batches(batch_size=1024):
                        yield batch.select(ASSETS_SCHEMA.names).cast(ASSETS_SCHEMA)

            return pa.RecordBatchReader.from_batches(ASSETS_SCHEMA, batches())

        return self._replace_rows(stream, ids, metadata=metadata)

    def _replace_rows(self, source: Callable[[], Any], ids: Sequence[str], *, metadata: Mapping[str, Any]) -> int:
        """Upsert on image_id as one predicate overwrite (Delta's "replaceWhere"): the commit
        removes the stored rows whose image_id is in ``ids`` and adds ``source``'s rows.

        Why not MERGE: delta-rs's merge joins the source with a scan of the target and took
        about twice the memory of this write in our benchmark (benchmarks/README.md). A
        predicate overwrite reads only the files whose statistics admit one of the ids,
        rewrites only those that hold one, and streams the source. It is as safe against a
        concurrent writer: delta-rs fails the commit when another one added or removed rows
        this predicate matches (two runs writing the same new image), and ``_upsert`` retries
        it on the new version.
        """
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        if repeated:
            raise DatasetError(f"{len(repeated)} image_id(s) repeated in one commit, e.g. {repeated[:3]}")
        predicate = _ids_predicate(ids)

        def replace(table: DeltaTable, rows: Any, props: CommitProperties) -> None:
            write_deltalake(table, rows, mode="overwrite", predicate=predicate, commit_properties=props)

        return self._upsert(self.assets_uri, source, metadata=metadata, build=replace)
