"""The ``media-enrich`` application object: its command group, ``-v``, and how a user's mistake
is reported (one ``error:`` line; ``-v`` adds the traceback).
"""

from __future__ import annotations

import contextvars
import os
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from rich.console import Console

from media_enrichment.errors import EnrichmentError

console = Console()

#: Options that show a traceback with a user error (and Prefect's logs), after any command.
_VERBOSE_FLAGS = ("-v", "--verbose")
#: Set while a command runs with -v/--verbose (by the app's group, for the error handler too).
_VERBOSE: contextvars.ContextVar[bool] = contextvars.ContextVar("media_enrich_verbose", default=False)
#: The start of the message Prefect raises when its temporary server does not answer in time.
_EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def _declares_verbose(command: Any) -> bool:
    return any(flag in _VERBOSE_FLAGS for param in command.params for flag in getattr(param, "opts", ()))


def _verbose_requested() -> bool:
    """Whether ``-v``/``--verbose`` was given to the app or to the running command."""
    return _VERBOSE.get()


class _Commands(typer.core.TyperGroup):
    """The app's command group: a user's mistake is one line, a bug keeps its traceback.

    An ``EnrichmentError`` (the library's errors and the commands' own checks) and a Prefect
    server that does not come up print ``error: ...`` and exit with 1; with ``-v``/``--verbose``
    (before or after the command's name) the traceback is printed first. Anything else is a bug
    and propagates with its traceback.
    """

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        options = rest[: rest.index("--")] if "--" in rest else rest
        if command is not None and any(a in _VERBOSE_FLAGS for a in options):
            _VERBOSE.set(True)
            if not _declares_verbose(command):  # every command accepts -v for the traceback
                rest = [a for a in options if a not in _VERBOSE_FLAGS] + rest[len(options):]
        return name, command, rest

    def invoke(self, ctx):
        token = _VERBOSE.set(False)
        try:
            return super().invoke(ctx)
        except EnrichmentError as exc:
            _report_user_error(exc, str(exc))
        except RuntimeError as exc:
            if _EPHEMERAL_TIMEOUT not in str(exc):
                raise
            budget = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "?")
            _report_user_error(
                exc,
                f"Prefect's temporary server did not answer within {budget} s: raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (e.g. to 600), or run `prefect server start` "
                "and set PREFECT_API_URL=http://127.0.0.1:4200/api",
            )
        finally:
            _VERBOSE.reset(token)


def _report_user_error(exc: BaseException, message: str) -> NoReturn:
    if _VERBOSE.get():
        import traceback

        Console(stderr=True).print(
            "".join(traceback.format_exception(exc)).rstrip(), markup=False, highlight=False, soft_wrap=True
        )
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=1)


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, help="Enrich image catalogues for multimodal search."
)


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks of errors (also accepted after a command).")
    ] = False,
) -> None:
    """Enrich image catalogues for multimodal search."""
    if verbose:
        _VERBOSE.set(True)


DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset root (local folder or s3:// URI).")]
DEFAULT_DATASET = "data/dataset"


def _fail(exc: Exception) -> NoReturn:
    """Stop the command on a user's mistake: one ``error:`` line (the app prints it; ``-v`` adds
    the traceback). Called in an ``except`` block, the original traceback is kept."""
    if isinstance(exc, EnrichmentError):
        raise exc
    raise EnrichmentError(str(exc)) from exc
