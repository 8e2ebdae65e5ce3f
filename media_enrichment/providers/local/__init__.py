"""Offline, deterministic providers: real work without any network or paid model.

* ``LocalDescriber`` (``describer``) reads the text in an image with RapidOCR (``ocr``) and
  measures visual properties (named dominant colours, brightness, colourfulness, detail,
  orientation, size), then writes title, description, keywords and tags from fixed rules.
* ``LocalEmbedder`` (``embedder``) turns an image into a content-based vector (layout, colour and
  edge statistics from ``features``, randomly projected), so near-duplicates land close
  together; a text query is mapped into the same space through the colours it names.

Both say ``local`` in their model ids; their output is never presented as Bedrock output.
Both are safe to call from several threads.
"""

from media_enrichment.providers.local.describer import LOCAL_DESCRIBER_MODEL_ID, LOCAL_RULES_VERSION, LocalDescriber
from media_enrichment.providers.local.embedder import LOCAL_EMBEDDING_DIMS, LocalEmbedder

__all__ = ["LOCAL_DESCRIBER_MODEL_ID", "LOCAL_EMBEDDING_DIMS", "LOCAL_RULES_VERSION", "LocalDescriber", "LocalEmbedder"]
