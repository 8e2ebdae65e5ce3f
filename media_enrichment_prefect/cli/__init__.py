"""The ``media-enrich`` command line, above the flows.

``app`` holds the command group and error reporting, ``running`` Prefect's environment and the
progress bar, ``run`` the commands that run work, ``dataset`` those over a dataset's tables and
``explore`` search and similarity. Prefect is imported only inside commands that run flows, after
its environment is set, so that ``show``/``history``/``export`` stay fast.
"""

# Importing a command module registers its commands, in this order in --help.
from media_enrichment_prefect.cli import run  # noqa: I001, F401
from media_enrichment_prefect.cli import dataset, explore  # noqa: F401
from media_enrichment_prefect.cli.app import app, console
from media_enrichment_prefect.cli.running import (
    EPHEMERAL_STARTUP_TIMEOUT_S,
    _UserErrorsOffTerminal,
    prepare_prefect_environment,
    run_flow_with_progress,
)

explore.register(app)

__all__ = [
    "EPHEMERAL_STARTUP_TIMEOUT_S",
    "_UserErrorsOffTerminal",
    "app",
    "console",
    "prepare_prefect_environment",
    "run_flow_with_progress",
]
