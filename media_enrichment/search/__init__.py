"""Text, image and "more like this" queries over the dataset's vectors.

``index`` holds the vectors in memory and ranks them (``VectorIndex``, ``Hit``); ``filters``
turns tag and keyword filters into a row mask; ``queries`` builds the query embedder that
matches the stored vectors and runs text, image and similar-image queries. This package
exports the names the rest of the library and the CLI use.
"""

from media_enrichment.search.index import Hit, VectorIndex
from media_enrichment.search.queries import check_embedder, embedder_for, search_image, search_text, similar

__all__ = ["Hit", "VectorIndex", "check_embedder", "embedder_for", "search_image", "search_text", "similar"]
