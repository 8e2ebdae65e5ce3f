"""Media enrichment: model-written metadata and multimodal vectors for image catalogues.

The library holds no Prefect import; `flows/` and `tasks/` orchestrate it.
"""

__version__ = "0.1.0"
