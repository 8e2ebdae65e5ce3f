"""The Delta dataset: an ``assets`` table keyed by image_id and a ``failures`` table.

Layout under the dataset root (a local folder or an ``s3://`` URI)::

    <root>/assets/      Delta table, one row per enriched image (schema.ASSETS_SCHEMA)
    <root>/failures/    Delta table, one row per image whose last attempt failed
    <root>/_staging/    finished chunks waiting to be merged (on S3 too, for an s3:// root)

Every commit carries the run id, the models and the prompt version in its commit metadata.

``Dataset`` is the handle; its parts live in this package's modules: ``tables`` (the location,
opening and reading the tables, versions and history), ``commits`` (commit metadata and the
create-or-merge loop that retries on conflicts), ``assets`` (upserts into the assets table),
``failures`` (the failures table's merge) and ``maintenance`` (rollback, compact, vacuum).
"""

from __future__ import annotations

from media_enrichment.dataset.assets import AssetWrites
from media_enrichment.dataset.failures import FailureWrites
from media_enrichment.dataset.maintenance import DEFAULT_MIN_RETENTION_HOURS, MAX_RETENTION_HOURS, DatasetMaintenance
from media_enrichment.dataset.tables import FINGERPRINT_COLUMNS

__all__ = ["DEFAULT_MIN_RETENTION_HOURS", "FINGERPRINT_COLUMNS", "MAX_RETENTION_HOURS", "Dataset"]


class Dataset(AssetWrites, FailureWrites, DatasetMaintenance):
    """Handle on the dataset's Delta tables. Cheap to build; opens tables on use."""
