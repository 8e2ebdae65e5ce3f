"""Running a flow from the command line: Prefect's environment (a project-local home, a start-up
budget for its temporary server, quiet logs) and a progress bar fed by the run's progress events.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from media_enrichment import progress as progress_events
from media_enrichment.errors import EnrichmentError
from media_enrichment_prefect.cli.app import _verbose_requested, console

#: Seconds Prefect's temporary server is given to start (its first start on a new home migrates
#: its database: 21.8 s measured on 2 cores, over Prefect's own default of 20 s).
EPHEMERAL_STARTUP_TIMEOUT_S = 180

def prepare_prefect_environment(*, verbose: bool = False) -> None:
    """Point Prefect at a project-local home and quiet it, unless the user configured it.

    With no ``PREFECT_API_URL``, Prefect starts a temporary local server for the run; its
    database lives in ``PREFECT_HOME`` (``./.prefect`` by default here).
    """
    verbose = verbose or _verbose_requested()
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    # Prefect waits 20 s for its temporary server; its first start on a new home takes longer.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Logs still reach the API (the UI shows them); only the terminal is kept quiet.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "false")


class _ProgressHandler(logging.Handler):
    """Turns progress events into a rich progress bar."""

    def __init__(self, bar: Progress):
        super().__init__()
        self.bar = bar
        self.task_id = bar.add_task("enriching", total=None)

    def emit(self, record: logging.LogRecord) -> None:
        total = getattr(record, "progress_total", None)
        if total is not None:
            self.bar.update(self.task_id, total=total, description=record.getMessage())
        advance = getattr(record, "progress_advance", 0)
        if advance:
            self.bar.advance(self.task_id, advance)


class _UserErrorsOffTerminal(logging.Filter):
    """Leaves Prefect's reports of a user's mistake (an ``EnrichmentError``, with its traceback)
    off the terminal: the command prints it once, as one line. The Prefect UI still has them, and
    with ``-v`` the terminal too. Other failures (bugs) are still printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EnrichmentError):
            return False
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Finished in state Failed"):
            message = record.getMessage()
            return not any(f"{name}:" in message for name in _error_names(EnrichmentError))
        return True


def _error_names(cls: type) -> set[str]:
    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


def run_flow_with_progress(**parameters: Any) -> dict[str, Any]:
    """Run the enrichment flow in this process with a progress bar on the terminal."""
    from media_enrichment_prefect.flows.enrich import enrich_catalog
    from prefect.logging.handlers import PrefectConsoleHandler

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    handler = _ProgressHandler(bar)
    progress_events.LOGGER.addHandler(handler)
    progress_events.LOGGER.setLevel(logging.INFO)
    quiet = _UserErrorsOffTerminal()
    consoles = [] if _verbose_requested() else [
        h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)
    ]
    for console_handler in consoles:
        console_handler.addFilter(quiet)
    try:
        with bar:
            return enrich_catalog(**parameters)
    finally:
        progress_events.LOGGER.removeHandler(handler)
        for console_handler in consoles:
            console_handler.removeFilter(quiet)
