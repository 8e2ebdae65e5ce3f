"""Progress events, published on a logger so that any front end (the CLI's bar) can listen.

The pipeline never depends on a listener being there.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("media_enrichment.progress")
LOGGER.propagate = False  # events are for listeners, not for the console


def report(*, total: int | None = None, advance: int = 0, label: str | None = None) -> None:
    """Announce the amount of work (``total``) or that ``advance`` more images are done."""
    LOGGER.info(label or "progress", extra={"progress_total": total, "progress_advance": advance})
