"""A small, deterministic sample catalogue drawn with Pillow, for demos, tests and benchmarks.

``catalog`` plans the catalogue, fabricates its near-duplicates and writes the files and the
manifest ``catalog.csv``; ``painters`` draws the pictures of each visual theme.
"""

from media_enrichment.sample.catalog import MANIFEST_COLUMNS, MANIFEST_NAME, POSTER_TEXTS, generate_sample_catalog

__all__ = ["MANIFEST_COLUMNS", "MANIFEST_NAME", "POSTER_TEXTS", "generate_sample_catalog"]
