"""``python -m media_enrichment_prefect.cli``: the same as the ``media-enrich`` command."""

from media_enrichment_prefect.cli import app

app(prog_name="media-enrich")
