"""The dataset's location and its tables opened for reading: rows, versions and history.

``DatasetTables`` is the base of ``Dataset``: where the tables and the staging area are, whether
the location is writable, opening a table (at a version, for time travel), what to say when there
is no table or no such version, and reading rows, fingerprints, failures and history.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from media_enrichment import storage
from media_enrichment.errors import DatasetError
from media_enrichment.schema import ASSETS_SCHEMA, FAILURES_SCHEMA

__all__ = ["FINGERPRINT_COLUMNS", "DatasetTables"]

#: Columns that decide whether a stored row can be reused instead of paid for again.
FINGERPRINT_COLUMNS = ["image_id", "content_sha256", "enrichment_model", "embedding_model", "prompt_version", "embedding_dim"]


class DatasetTables:
    """The dataset's root and its tables, read (``Dataset`` adds writing and maintenance)."""

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
