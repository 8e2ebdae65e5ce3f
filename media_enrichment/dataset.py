"""The Delta dataset: an ``assets`` table keyed by image_id and a ``failures`` table.

Layout under the dataset root (a local folder or an ``s3://`` URI)::

    <root>/assets/      Delta table, one row per enriched image (schema.ASSETS_SCHEMA)
    <root>/failures/    Delta table, one row per image whose last attempt failed
    <root>/_staging/    finished chunks waiting to be merged (on S3 too, for an s3:// root)

Every commit carries the run id, the models and the prompt version in its commit metadata.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from media_enrichment import storage
from media_enrichment.errors import DatasetError
from media_enrichment.schema import ASSETS_SCHEMA, FAILURES_SCHEMA

#: Columns that decide whether a stored row can be reused instead of paid for again.
FINGERPRINT_COLUMNS = ["image_id", "content_sha256", "enrichment_model", "embedding_model", "prompt_version", "embedding_dim"]

_COMMIT_ATTEMPTS = 5

#: delta-rs's default for a table's ``delta.deletedFileRetentionDuration`` (7 days): vacuum refuses less.
DEFAULT_MIN_RETENTION_HOURS = 168
#: The longest retention vacuum accepts (100 years); delta-rs panics on durations near 2**63 hours.
MAX_RETENTION_HOURS = 100 * 365 * 24
_INTERVAL_HOURS = {
    "nanosecond": 1 / 3.6e12, "microsecond": 1 / 3.6e9, "millisecond": 1 / 3.6e6, "second": 1 / 3600,
    "minute": 1 / 60, "hour": 1, "day": 24, "week": 168,
}


def _interval_hours(text: str | None) -> float | None:
    """Hours of a Delta table property interval such as ``interval 7 days`` (None if unreadable)."""
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+([a-z]+?)s?\s*", (text or "").lower())
    if not match or match.group(2) not in _INTERVAL_HOURS:
        return None
    return int(match.group(1)) * _INTERVAL_HOURS[match.group(2)]


def _commit_properties(metadata: Mapping[str, Any]) -> CommitProperties:
    # Delta's commitInfo holds strings best; keep nested values readable as JSON.
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}
    return CommitProperties(custom_metadata=flat)


def _ids_predicate(ids: Iterable[str]) -> str:
    """A SQL predicate matching these image_ids (quotes doubled, as SQL string literals need)."""
    quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
    return f"image_id IN ({quoted})"


def _without_resolved(source: Any) -> Any:
    """A new failures table has nothing to resolve: keep only the failure rows."""
    if isinstance(source, pa.Table) and "resolved" in source.column_names:
        return source.filter(pc.invert(source.column("resolved"))).drop_columns(["resolved"])
    return source


class Dataset:
    """Handle on the dataset's Delta tables. Cheap to build; opens tables on use."""

    def __init__(
        self,
        root: str | Path,
        *,
        storage_options: Mapping[str, str] | None = None,
    ):
        self.root = str(root).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.assets_uri = f"{self.root}/assets"
        self.failures_uri = f"{self.root}/failures"

    # -- reading ---------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    @property
    def staging_dir(self) -> str:
        """Where finished chunks wait for the merge: ``<root>/_staging``, on the local disk or on
        S3 beside the tables, so that chunk tasks on other machines and a resumed run see it."""
        return storage.join(self.root, "_staging")

    def check_writable(self) -> None:
        """Refuse, before any work is paid for, a location this run could not write.

        Locally the tables' and the staging area's folders (or their nearest existing
        parents) must be writable folders: nothing is created. On S3 a probe object is written
        and deleted under the staging prefix, which checks the bucket, the credentials (this
        handle's storage options, or the environment) and the write permission.

        Raises:
            DatasetLocationError: one line with the reason and the fix.
        """
        folders = [self.root, self.staging_dir, self.assets_uri, self.failures_uri] if self.is_local else [self.staging_dir]
        for folder in folders:
            storage.check_writable(folder, options=self.storage_options)

    def _open(self, uri: str, *, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def assets_table(self, *, version: int | None = None) -> DeltaTable:
        """The assets Delta table.

        Args:
            version: a table version for time travel; the latest when None.

        Returns:
            The opened table.

        Raises:
            DatasetError: there is no assets table (nothing was enriched yet) or no such version.
        """
        try:
            # delta-rs raises a generic error for a version that does not exist, OverflowError for -1
            table = None if version is not None and version < 0 else self._open(self.assets_uri, version=version)
        except Exception as exc:
            latest = self._open(self.assets_uri)
            if latest is None:
                raise DatasetError(self.missing_message()) from exc
            if self._has_version(latest, version):
                raise DatasetError(f"cannot open {self.assets_uri} at version {version}: {exc}") from exc
            raise DatasetError(self._no_version(latest, version)) from exc
        if table is None:
            latest = self._open(self.assets_uri) if version is not None else None
            if latest is not None:
                raise DatasetError(self._no_version(latest, version))
            raise DatasetError(self.missing_message())
        return table

    def missing_message(self) -> str:
        """What to tell a user whose dataset root holds no table."""
        return f"no dataset at {self.root} yet: run an enrichment first"

    def exists(self) -> bool:
        """Whether the root holds the assets or the failures table (a run created it)."""
        return self._open(self.assets_uri) is not None or self._open(self.failures_uri) is not None

    @staticmethod
    def _versions(table: DeltaTable) -> tuple[int, int]:
        """The oldest and newest versions the table's log still holds."""
        versions = [int(h["version"]) for h in table.history() if "version" in h] or [table.version()]
        return min(versions), table.version()

    def _has_version(self, table: DeltaTable, version: int) -> bool:
        oldest, newest = self._versions(table)
        return oldest <= version <= newest

    def _no_version(self, table: DeltaTable, version: int) -> str:
        oldest, newest = self._versions(table)
        have = f"version {newest} only" if oldest == newest else f"versions {oldest}–{newest}"
        return f"no version {version} of the dataset at {self.root}: the table has {have}"

    def version(self) -> int | None:
        """The assets table's latest version, or None if it does not exist."""
        table = self._open(self.assets_uri)
        return None if table is None else table.version()

    def read_assets(self, *, columns: list[str] | None = None, version: int | None = None) -> pd.DataFrame:
        """Rows of the assets table as a DataFrame (empty with the schema's columns if no table)."""
        if version is None and self._open(self.assets_uri) is None:
            return ASSETS_SCHEMA.empty_table().to_pandas()[columns or ASSETS_SCHEMA.names]
        return self.assets_table(version=version).to_pandas(columns=columns)

    def fingerprints(self) -> pd.DataFrame:
        """What is stored per image, to decide what must be enriched again."""
        return self.read_assets(columns=FINGERPRINT_COLUMNS)

    def read_failures(self) -> pd.DataFrame:
        table = self._open(self.failures_uri)
        if table is None:
            return FAILURES_SCHEMA.empty_table().to_pandas()
        return table.to_pandas()

    def history(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Versions of the assets table, newest first, with their commit metadata."""
        table = self._open(self.assets_uri)
        return [] if table is None else table.history(limit)

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

    # -- maintenance -----------------------------------------------------------------------

    def rollback(self, version: int, *, metadata: Mapping[str, Any] | None = None) -> int:
        """Restore the assets table to an earlier version, as a new commit (history is kept).

        Args:
            version: the version whose content becomes current again.
            metadata: commit metadata.

        Returns:
            The new table version.

        Raises:
            DatasetError: no assets table, no such version, or it is the current one.
        """
        table = self.assets_table()
        if version == table.version():
            raise DatasetError(f"version {version} is already the current version of the dataset at {self.root}")
        if not 0 <= version < table.version():  # (the log is read only to say which versions there are)
            raise DatasetError(f"cannot roll back: {self._no_version(table, version)}")
        table.restore(version, commit_properties=_commit_properties({"restored_to": version, **(metadata or {})}))
        return table.version()

    def compact(self) -> dict[str, Any]:
        """Rewrite small files of the assets table into larger ones (a new version, same rows).

        Returns:
            delta-rs's metrics (files added and removed).
        """
        return self.assets_table().optimize.compact()

    def vacuum(self, *, retention_hours: int = 168, dry_run: bool = True) -> list[str]:
        """List, or delete, files no version newer than ``retention_hours`` needs.

        Deleting them makes time travel to older versions impossible, so the default only lists
        them, and a retention under the table's minimum (its ``delta.deletedFileRetentionDuration``,
        7 days by default), which delta-rs would refuse, is refused before it is asked.

        Args:
            retention_hours: keep files needed by versions of this age.
            dry_run: list only.

        Returns:
            The files that are (or would be) deleted.

        Raises:
            DatasetError: no assets table, or a retention out of bounds.
        """
        table = self.assets_table()
        configured = table.metadata().configuration.get("delta.deletedFileRetentionDuration")
        floor = _interval_hours(configured) if configured else DEFAULT_MIN_RETENTION_HOURS
        if floor is not None and retention_hours < floor:
            source = f"its delta.deletedFileRetentionDuration is {configured!r}" if configured else "the Delta default"
            raise DatasetError(
                f"a retention of {retention_hours} hours is under this table's minimum of {math.ceil(floor)} hours "
                f"({source}): files younger than that may still be needed by readers and unfinished commits"
            )
        if retention_hours > MAX_RETENTION_HOURS:
            raise DatasetError(f"a retention of {retention_hours} hours is over the maximum of {MAX_RETENTION_HOURS} (100 years)")
        try:
            return table.vacuum(retention_hours=retention_hours, dry_run=dry_run)
        except DeltaError as exc:  # e.g. a retention under the table's minimum
            raise DatasetError(f"vacuum refused: {exc}") from exc

