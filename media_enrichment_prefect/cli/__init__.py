"""The ``media-enrich`` command line.

Prefect is imported only inside commands that run flows, after its environment is set, so that
``show``/``history``/``export`` stay fast and the embedded server's state lives in ``.prefect/``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from media_enrichment import progress as progress_events
from media_enrichment.catalog import load_catalog
from media_enrichment.config import Settings, build_settings, env_name
from media_enrichment.errors import ConfigError, DatasetError, EnrichmentError

console = Console()

#: Options that show a traceback with a user error (and Prefect's logs), after any command.
_VERBOSE_FLAGS = ("-v", "--verbose")
#: Set while a command runs with -v/--verbose (by the app's group, for the error handler too).
_VERBOSE: contextvars.ContextVar[bool] = contextvars.ContextVar("media_enrich_verbose", default=False)
#: The start of the message Prefect raises when its temporary server does not answer in time.
_EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"
#: Seconds Prefect's temporary server is given to start (its first start on a new home migrates
#: its database: 21.8 s measured on 2 cores, over Prefect's own default of 20 s).
EPHEMERAL_STARTUP_TIMEOUT_S = 180


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


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Enrichment run", show_header=False)
    for key in (
        "source", "dataset", "batch", "catalog_rows", "reused", "enriched", "failed", "given_up", "chunks",
        "task_runner", "input_tokens", "output_tokens", "assets_version", "failures_version", "duration_s",
        "images_per_s", "estimated_cost_usd", "enrichment_model", "embedding_model", "prompt_version", "embedding_dim", "run_id",
    ):
        table.add_row(key, "-" if summary.get(key) is None else str(summary[key]))
    console.print(table)


def _option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _settings(**given: Any) -> Settings:
    """The settings of a command: the options given (``None``: not given), then the
    ``MEDIA_ENRICH_*`` environment, then the defaults of ``Settings``.

    Raises:
        ConfigError: one line naming each bad value's option or variable.
    """
    return build_settings(given, name_of=_option_name)


def _setting_help(field: str, text: str | None = None, *, unset: str = "none") -> str:
    """An option's help: what it sets and where its default comes from (``Settings``, not here);
    ``unset`` says what a default of None means."""
    info = Settings.model_fields[field]
    default = info.default
    shown = unset if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    return f"{text or info.description} (default: ${env_name(field)}, else {shown})"


def _check_run(source: str, settings: Settings) -> None:
    """Refuse a run for what can be checked without Prefect or any model: a local catalogue,
    the price file, and for Bedrock the prompt file and a region."""
    from media_enrichment.aws import resolve_region
    from media_enrichment.cost import load_prices

    if "://" not in source:  # the flow checks S3 catalogues, with the run's credentials
        load_catalog(source, limit=settings.limit, batch=settings.batch)
    load_prices(settings.price_file)
    if settings.provider == "bedrock":
        from media_enrichment.prompts import load_prompt

        load_prompt(settings.prompt_file)
        # With an AwsCredentials block the region may be the block's: the flow resolves it.
        if not settings.aws_credentials_block and not resolve_region(settings.aws_region, profile=settings.aws_profile):
            raise ConfigError(
                "no AWS region for Bedrock: set AWS_REGION (or MEDIA_ENRICH_AWS_REGION, AWS_DEFAULT_REGION, "
                "or a region in the AWS profile)"
            )


def _fail(exc: Exception) -> NoReturn:
    """Stop the command on a user's mistake: one ``error:`` line (the app prints it; ``-v`` adds
    the traceback). Called in an ``except`` block, the original traceback is kept."""
    if isinstance(exc, EnrichmentError):
        raise exc
    raise EnrichmentError(str(exc)) from exc


@app.command()
def run(
    source: Annotated[str, typer.Argument(help="Manifest (.csv/.parquet), folder, or s3:// prefix.")],
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", "-d", help=_setting_help("dataset", "Dataset root (local folder or s3:// URI)."))
    ] = None,
    provider: Annotated[Optional[str], typer.Option(help=_setting_help("provider", "'local' (offline) or 'bedrock'."))] = None,
    chunk_size: Annotated[Optional[int], typer.Option(help=_setting_help("chunk_size"))] = None,
    concurrency: Annotated[Optional[int], typer.Option(help=_setting_help("concurrency"))] = None,
    embedding_dim: Annotated[Optional[int], typer.Option(help=_setting_help("embedding_dim"))] = None,
    limit: Annotated[Optional[int], typer.Option(help=_setting_help("limit", unset="no limit"))] = None,
    force: Annotated[Optional[bool], typer.Option(help=_setting_help("force"))] = None,
    batch: Annotated[
        Optional[str], typer.Option(help=_setting_help("batch", "Batch label stored on each row.", unset="the source's name"))
    ] = None,
    retry_failures: Annotated[Optional[bool], typer.Option(help=_setting_help("retry_failures"))] = None,
    task_runner: Annotated[Optional[str], typer.Option(help=_setting_help("task_runner"))] = None,
    dask_address: Annotated[
        Optional[str], typer.Option(help=_setting_help("dask_address", unset="a local cluster per run"))
    ] = None,
    dask_workers: Annotated[Optional[int], typer.Option(help=_setting_help("dask_workers"))] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Enrich a catalogue into the dataset (skips images already enriched with the same models).

    An option left out takes its MEDIA_ENRICH_* variable, else the settings' default.
    """
    given = {
        "dataset": dataset, "provider": provider, "chunk_size": chunk_size, "concurrency": concurrency,
        "embedding_dim": embedding_dim, "limit": limit, "force": force, "batch": batch,
        "retry_failures": retry_failures, "task_runner": task_runner,
    }
    cluster = {"dask_address": dask_address, "dask_workers": dask_workers}
    # Everything that can be refused is, before Prefect starts and before any model is called.
    _check_run(source, _settings(**given, **cluster))
    # The Dask cluster is a setting of the process running the flow, not a flow parameter.
    for name, value in cluster.items():
        if value is not None:
            os.environ[env_name(name)] = str(value)
    prepare_prefect_environment(verbose=verbose)
    summary = run_flow_with_progress(source=source, **{k: v for k, v in given.items() if v is not None})
    _print_summary(summary)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Where the sample catalogue is generated.")] = Path("data/sample"),
    dataset: DatasetOpt = DEFAULT_DATASET,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Generate the sample catalogue and enrich it offline with the local provider."""
    from media_enrichment.sample import generate_sample_catalog

    manifest = generate_sample_catalog(folder)
    console.print(f"Sample catalogue: [bold]{manifest}[/]")
    prepare_prefect_environment(verbose=verbose)
    summary = run_flow_with_progress(source=str(manifest), dataset=dataset, provider="local")
    _print_summary(summary)
    _print_rows(dataset, limit=8, version=None)


def _print_rows(dataset: str, *, limit: int, version: int | None) -> None:
    from media_enrichment.dataset import Dataset

    columns = ["image_id", "title", "tags", "ocr_texts", "embedding_dim"]
    # assets_table, not read_assets: a mistyped --dataset is an error, not an empty table
    frame = Dataset(dataset).assets_table(version=version).to_pandas(columns=columns).sort_values("image_id").head(limit)
    table = Table(title=f"{dataset} (first {len(frame)} rows)")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in frame.to_dict("records"):
        table.add_row(*[", ".join(v) if hasattr(v, "__len__") and not isinstance(v, str) else str(v) for v in record.values()])
    console.print(table)


@app.command()
def show(
    dataset: DatasetOpt = DEFAULT_DATASET,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
    version: Annotated[Optional[int], typer.Option(help="Table version (time travel).")] = None,
) -> None:
    """Show rows of the dataset."""
    try:
        _print_rows(dataset, limit=limit, version=version)
    except EnrichmentError as exc:
        _fail(exc)


@app.command()
def history(
    dataset: DatasetOpt = DEFAULT_DATASET,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Newest N versions.")] = None,
) -> None:
    """List the assets table's versions, then each run's counts and models (fits 80 columns)."""
    from rich import box

    from media_enrichment.dataset import Dataset

    store = Dataset(dataset)
    entries = store.history(limit=limit)
    if not entries:
        _fail(DatasetError(store.missing_message()))
    # One narrow row per version; what a run shares (models, totals) is said once, below.
    table = Table(
        title=f"{dataset}/assets history", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1, 0, 0)
    )
    table.add_column("version", justify="right")
    table.add_column("committed (UTC)", no_wrap=True)
    table.add_column("operation")
    table.add_column("enriched", justify="right")
    table.add_column("part")
    table.add_column("run", overflow="fold")
    runs: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        run_id = entry.get("run_id")
        if run_id:
            runs.setdefault(run_id, []).append(entry)
        table.add_row(
            str(entry.get("version", "-")), _timestamp(entry.get("timestamp")), str(entry.get("operation", "-")),
            _commit_enriched(entry), str(entry.get("part", "")), _commit_note(entry),
        )
    console.print(table)
    for run_id, commits in runs.items():
        console.print(_run_line(run_id, commits), highlight=False)


def _commit_enriched(entry: dict[str, Any]) -> str:
    """The rows this commit enriched: a part of a run counts its own, not the run's."""
    if entry.get("part"):
        return str(entry.get("part_enriched", "-"))
    return str(entry.get("enriched", "-"))


def _commit_note(entry: dict[str, Any]) -> str:
    if entry.get("restored_to") is not None:
        return f"restored version {entry['restored_to']}"
    if not entry.get("run_id"):
        return "-"
    return str(entry.get("flow_run_name") or str(entry["run_id"])[:8])


def _run_line(run_id: str, commits: list[dict[str, Any]]) -> str:
    """One run's totals and models, e.g. ``run premium-camel (0e9d…), versions 0–2: 12 enriched, …``."""
    last = commits[0]  # newest first: every part carries the run's totals
    versions = sorted(int(c["version"]) for c in commits if "version" in c)
    where = f"version {versions[0]}" if len(versions) == 1 else f"versions {versions[0]}–{versions[-1]}"
    name = f"{last['flow_run_name']} ({run_id})" if last.get("flow_run_name") else run_id
    counts = ", ".join(f"{last[k]} {k}" for k in ("enriched", "failed", "reused") if last.get(k) is not None)
    models = ", ".join(str(last[k]) for k in ("enrichment_model", "embedding_model") if last.get(k))
    if last.get("embedding_dim"):
        models += f" ({last['embedding_dim']} dims)"
    if last.get("prompt_version"):
        models += f", prompt {last['prompt_version']}"
    return f"run {name}, {where}: " + "; ".join(part for part in (counts, models) if part)


def _timestamp(millis: Any) -> str:
    from datetime import datetime, timezone

    return "-" if millis is None else datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def export(
    csv: Annotated[Path, typer.Option("--csv", help="Write the dataset as CSV to this file.")],
    dataset: DatasetOpt = DEFAULT_DATASET,
    version: Annotated[Optional[int], typer.Option(help="Table version (time travel).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export the dataset as the original notebook's CSV (plus ocr_texts and embeddings)."""
    from media_enrichment.dataset import Dataset

    if csv.is_dir():
        _fail(EnrichmentError(f"{csv} is a folder: give --csv the path of a file"))
    if csv.exists() and not overwrite:
        _fail(EnrichmentError(f"{csv} exists; pass --overwrite to replace it"))
    frame = Dataset(dataset).assets_table(version=version).to_pandas()  # no table: an error, not an empty file
    out = frame.sort_values("image_id").assign(
        path=frame["source_uri"],
        keywords=frame["keywords"].map(lambda v: ", ".join(v)),
        tags=frame["tags"].map(lambda v: ", ".join(v)),
        ocr_texts=frame["ocr_texts"].map(lambda v: json.dumps(list(v))),
        embeddings=frame["embedding"].map(lambda v: json.dumps([round(float(x), 6) for x in v])),
    )[["image_id", "path", "title", "description", "keywords", "tags", "ocr_texts", "embeddings"]]
    try:
        csv.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(csv, index=False)
    except (FileExistsError, NotADirectoryError) as exc:  # a parent folder is a file
        _fail(EnrichmentError(f"cannot write {csv}: {exc.filename or csv.parent} is not a folder"))
    except OSError as exc:  # no permission, a full disk
        _fail(EnrichmentError(f"cannot write {csv}: {exc.strerror or exc}"))
    console.print(f"Wrote {len(out)} rows to {csv}")


from media_enrichment_prefect.cli import explore as cli_explore  # noqa: E402

cli_explore.register(app)


@app.command()
def failures(
    dataset: DatasetOpt = DEFAULT_DATASET,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 50,
) -> None:
    """List images whose last attempt failed (retried by the next run unless left alone)."""
    from media_enrichment.dataset import Dataset

    store = Dataset(dataset)
    if not store.exists():  # a mistyped --dataset is not a dataset without failures
        _fail(DatasetError(store.missing_message()))
    frame = store.read_failures().sort_values("image_id")
    if frame.empty:
        console.print("No failures.")
        return
    table = Table(title=f"{len(frame)} failure(s) in {dataset}")
    columns = ["image_id", "stage", "error_type", "attempts", "permanent", "message"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in frame.head(limit)[columns].to_dict("records"):
        table.add_row(*[str(record[c]) for c in columns])
    console.print(table)


@app.command()
def rollback(
    version: Annotated[int, typer.Argument(help="The version to make current again.")],
    dataset: DatasetOpt = DEFAULT_DATASET,
) -> None:
    """Restore the assets table to an earlier version (a new commit; history is kept)."""
    from media_enrichment.dataset import Dataset

    try:
        new_version = Dataset(dataset).rollback(version)
    except EnrichmentError as exc:
        _fail(exc)
    console.print(f"Restored version {version} as version {new_version}.")


@app.command()
def compact(dataset: DatasetOpt = DEFAULT_DATASET) -> None:
    """Compact the assets table's small files (a new version with the same rows)."""
    from media_enrichment.dataset import Dataset

    try:
        metrics = Dataset(dataset).compact()
    except EnrichmentError as exc:
        _fail(exc)
    console.print(f"Files removed: {metrics.get('numFilesRemoved')}, added: {metrics.get('numFilesAdded')}")


@app.command()
def vacuum(
    dataset: DatasetOpt = DEFAULT_DATASET,
    retention_hours: Annotated[
        int, typer.Option(min=0, help="Keep files needed by versions this recent (at least the table's minimum, 168).")
    ] = 168,
    apply: Annotated[bool, typer.Option("--apply", help="Delete the files (default: only list them).")] = False,
) -> None:
    """List (or, with --apply, delete) files that no recent version needs; ends time travel before them."""
    from media_enrichment.dataset import Dataset

    try:
        files = Dataset(dataset).vacuum(retention_hours=retention_hours, dry_run=not apply)
    except EnrichmentError as exc:
        _fail(exc)
    verb = "Deleted" if apply else "Would delete"
    console.print(f"{verb} {len(files)} file(s).")
    for name in files[:50]:
        console.print(f"  {name}")


@app.command()
def serve(
    file: Annotated[
        Optional[Path], typer.Option(help="The deployments file (default: the project's deployments/prefect.yaml).")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", "-d", help=_setting_help("dataset", "Dataset for every deployment."))
    ] = None,
    source: Annotated[Optional[str], typer.Option(help="Catalogue of the scheduled deployment.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Flow runs at once in this process.")] = None,
) -> None:
    """Serve the deployments of deployments/prefect.yaml (schedules, backfills) from this process.

    What a deployment leaves out, its runs take from this process's MEDIA_ENRICH_* environment.
    """
    _settings(dataset=dataset)
    prepare_prefect_environment(verbose=True)
    from prefect import serve as serve_all

    from media_enrichment_prefect.flows.deployments import DEFAULT_FILE, load_deployments

    overrides = {k: v for k, v in {"dataset": dataset, "source": source}.items() if v is not None}
    deployments = load_deployments(file or DEFAULT_FILE, overrides=overrides)  # all checked before serving
    if "PREFECT_API_URL" not in os.environ:
        console.print(
            "[yellow]PREFECT_API_URL is not set:[/] serving against a temporary server that lives only as long as "
            "this process. Start `prefect server start` and export PREFECT_API_URL to watch runs in the UI."
        )
    serve_all(*deployments, limit=limit)


@app.command()
def backfill(
    source: Annotated[str, typer.Argument(help="Manifest with a batch column, or a folder/prefix with {batch} in it.")],
    batch: Annotated[Optional[list[str]], typer.Option("--batch", "-b", help="A batch label (repeatable).")] = None,
    start: Annotated[Optional[str], typer.Option(help="First day of a date range (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last day of a date range (YYYY-MM-DD).")] = None,
    dataset: Annotated[
        Optional[str],
        typer.Option("--dataset", "-d", help="Dataset of every run (default: the settings of the process running it)."),
    ] = None,
    provider: Annotated[
        Optional[str], typer.Option(help="'local' or 'bedrock' (default: the settings of the process running it).")
    ] = None,
    deployment: Annotated[str, typer.Option(help="The enrichment deployment to run.")] = "enrich-catalog/backfill",
) -> None:
    """Launch one flow run per batch through the backfill deployment; repeating it runs nothing twice.

    Only the options given are sent with the runs; the rest comes from the settings of the
    process that executes them (`serve` or a worker).
    """
    from datetime import date

    settings = _settings(dataset=dataset, provider=provider)
    prepare_prefect_environment()
    from prefect.exceptions import ObjectNotFound

    from media_enrichment_prefect.flows.backfill import batch_labels, check_backfill_source, launch_backfill

    try:
        labels = batch_labels(
            batches=batch, start=date.fromisoformat(start) if start else None, end=date.fromisoformat(end) if end else None
        )
    except ValueError as exc:
        _fail(exc)
    s3 = None
    if source.startswith("s3://"):
        from media_enrichment.aws import s3_client

        s3 = s3_client(settings)
    check_backfill_source(source, labels, s3_client=s3)  # before any run is created
    try:
        runs = launch_backfill(source=source, batch_list=labels, dataset=dataset, provider=provider, deployment=deployment)
    except ObjectNotFound:
        _fail(EnrichmentError(
            f"deployment {deployment} not found: run `media-enrich serve` (or `prefect deploy`) against the Prefect "
            "server in PREFECT_API_URL first"
        ))
    table = Table(title=f"Backfill of {len(runs)} batch(es) via {deployment}")
    for column in ("batch", "flow_run_name", "flow_run_id", "state"):
        table.add_column(column)
    for run in runs:
        table.add_row(run["batch"], run["flow_run_name"], run["flow_run_id"], str(run["state"]))
    console.print(table)


@app.command()
def estimate(
    source: Annotated[str, typer.Argument(help="Manifest (.csv/.parquet), folder, or s3:// prefix.")],
    model: Annotated[Optional[str], typer.Option(help="Describer model id (default: settings).")] = None,
    output_tokens: Annotated[int, typer.Option(min=1, help="Expected answer tokens per image.")] = 300,
    prices: Annotated[Optional[Path], typer.Option(help="JSON price table (see media_enrichment/cost.py).")] = None,
    prompt: Annotated[Optional[Path], typer.Option(help="Prompt template file (default: the bundled one).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N rows.")] = None,
) -> None:
    """Estimate the image tokens and cost of enriching a catalogue with Bedrock, calling no model."""
    from media_enrichment.aws import s3_client
    from media_enrichment.catalog import read_bytes
    from media_enrichment.cost import estimate_catalog, load_prices, text_tokens
    from media_enrichment.prompts import load_prompt
    from media_enrichment.aws import resolve_region
    from media_enrichment.providers.bedrock import METADATA_TOOL, resolve_describer_model

    try:
        settings = Settings(provider="bedrock", **({"describer_model_id": model} if model else {}))
        # The id a run would call: the configured one, or the default's profile for the region.
        describer = resolve_describer_model(
            resolve_region(settings.aws_region, profile=settings.aws_profile), settings.describer_model_id
        )
        client = s3_client(settings) if source.startswith("s3://") else None
        catalog = load_catalog(source, s3_client=client, limit=limit)
        template = load_prompt(prompt or settings.prompt_file)
        result = estimate_catalog(
            catalog,
            read=lambda uri: read_bytes(uri, s3_client=client),
            enrichment_model=describer,
            embedding_model=settings.embedder_model_id,
            prompt_tokens_per_image=text_tokens(template.text) + text_tokens(json.dumps(METADATA_TOOL)),
            output_tokens_per_image=output_tokens,
            prices=load_prices(prices or settings.price_file),
        )
    except EnrichmentError as exc:
        _fail(exc)
    table = Table(title=f"Estimate for {source}", show_header=False)
    rows = {
        "describer": describer,
        "embedder": settings.embedder_model_id,
        "images": result.images,
        "unreadable": result.unreadable,
        "image tokens": result.image_tokens,
        "prompt tokens": result.prompt_tokens,
        "output tokens (assumed)": result.output_tokens,
        "estimated cost (USD)": "unknown model price" if result.cost_usd is None else f"{result.cost_usd:.4f}",
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)

