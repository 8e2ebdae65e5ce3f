"""The Prefect side of media enrichment, above the library: flows order tasks, tasks wrap one
library call each, and the ``media-enrich`` command line sits on top.

Import direction: ``cli`` -> ``flows`` -> ``tasks`` -> ``media_enrichment`` (the library, which
imports neither Prefect nor this package).
"""
