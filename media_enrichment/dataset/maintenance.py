"""Maintaining the assets table: rollback to an earlier version, compaction, and vacuum.

Vacuum's retention is bounded before delta-rs is asked: not under the table's
``delta.deletedFileRetentionDuration`` (``DEFAULT_MIN_RETENTION_HOURS`` when unset), not over
``MAX_RETENTION_HOURS``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from deltalake.exceptions import DeltaError

from media_enrichment.dataset.commits import _commit_properties
from media_enrichment.dataset.tables import DatasetTables
from media_enrichment.errors import DatasetError

__all__ = ["DEFAULT_MIN_RETENTION_HOURS", "MAX_RETENTION_HOURS", "DatasetMaintenance"]

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


class DatasetMaintenance(DatasetTables):
    """Rollback, compaction and vacuum of the assets table."""

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
