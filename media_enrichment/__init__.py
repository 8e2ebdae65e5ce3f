"""Media enrichment: model-written metadata and multimodal vectors for image catalogues.

The library holds no Prefect import; `media_enrichment_prefect` (flows, tasks, CLI) orchestrates it.
"""

import os

__version__ = "0.1.0"

#: delta-rs (the ``deltalake`` wheel) allocates with its own jemalloc, which by default keeps
#: freed pages for 10 s in each of its arenas. A run commits several parts back to back, so the
#: process would hold every commit's buffers at once and its peak memory would grow with the
#: catalogue (benchmarks/README.md, comparison 4). Returning pages at once costs about 0.1 s per
#: 2,000-row commit. Read once, when deltalake's library loads: this module is imported before
#: it by every entry point. A value set by the user is kept.
JEMALLOC_CONF_VAR = "_RJEM_MALLOC_CONF"
JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault(JEMALLOC_CONF_VAR, JEMALLOC_CONF)
