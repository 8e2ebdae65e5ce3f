"""The ``media-enrich`` command line.

Prefect is imported only inside commands that run flows, after its environment is set, so that
``show``/``history``/``export`` stay fast and the embedded server's state lives in ``.prefect/``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from media_enrichment import progress as progress_events
from media_enrichment.catalog import load_catalog
from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError, EnrichmentError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Enrich image catalogues for multimodal search.")
console = Console()

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset root (local folder or s3:// URI).")]
DEFAULT_DATASET = "data/dataset"


def prepare_prefect_environment(*, verbose: bool = False) -> None:
    """Point Prefect at a project-local home and quiet it, unless the user configured it.

    With no ``PREFECT_API_URL``, Prefect starts a temporary local server for the run; its
    database lives in ``PREFECT_HOME`` (``./.prefect`` by default here).
    """
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
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


def run_flow_with_progress(**parameters: Any) -> dict[str, Any]:
    """Run the enrichment flow in this process with a progress bar on the terminal."""
    from flows.enrich import enrich_catalog

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
    try:
        with bar:
            return enrich_catalog(**parameters)
    finally:
        progress_events.LOGGER.removeHandler(handler)


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Enrichment run", show_header=False)
    for key in (
        "source", "dataset", "batch", "catalog_rows", "reused", "enriched", "failed", "given_up", "chunks",
        "task_runner", "input_tokens", "output_tokens", "assets_version", "failures_version", "duration_s",
        "images_per_s", "estimated_cost_usd", "enrichment_model", "embedding_model", "prompt_version", "embedding_dim", "run_id",
    ):
        table.add_row(key, "-" if summary.get(key) is None else str(summary[key]))
    console.print(table)


def _settings(**values: Any) -> Settings:
    """Settings from the environment and these values; a bad combination is a ConfigError."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(str(e["msg"]) for e in exc.errors())) from exc


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=1)


@app.command()
def run(
    source: Annotated[str, typer.Argument(help="Manifest (.csv/.parquet), folder, or s3:// prefix.")],
    dataset: DatasetOpt = DEFAULT_DATASET,
    provider: Annotated[str, typer.Option(help="'local' (offline) or 'bedrock'.")] = "local",
    chunk_size: Annotated[int, typer.Option(min=1, help="Images per task run.")] = 16,
    concurrency: Annotated[int, typer.Option(min=1, help="Chunk tasks at once.")] = 4,
    embedding_dim: Annotated[int, typer.Option(help="256, 384 or 1024.")] = 1024,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Enrich at most N catalogue rows.")] = None,
    force: Annotated[bool, typer.Option(help="Enrich every row again.")] = False,
    batch: Annotated[Optional[str], typer.Option(help="Batch label (default: the source's name).")] = None,
    retry_failures: Annotated[bool, typer.Option(help="Try failed images again, even those left alone.")] = False,
    task_runner: Annotated[
        Optional[str], typer.Option(help="'threads' (default) or 'dask': where chunk tasks run.")
    ] = None,
    dask_address: Annotated[Optional[str], typer.Option(help="Scheduler of an existing Dask cluster.")] = None,
    dask_workers: Annotated[Optional[int], typer.Option(min=1, help="Processes of a local Dask cluster.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Enrich a catalogue into the dataset (skips images already enriched with the same models)."""
    prepare_prefect_environment(verbose=verbose)
    try:
        # The Dask cluster is a setting of the process running the flow (MEDIA_ENRICH_DASK_*).
        for name, value in (("DASK_ADDRESS", dask_address), ("DASK_WORKERS", dask_workers)):
            if value is not None:
                os.environ[f"MEDIA_ENRICH_{name}"] = str(value)
        # Refuse a bad combination (e.g. Dask with per-process rate limits) before Prefect starts.
        _settings(provider=provider, concurrency=concurrency, **({"task_runner": task_runner} if task_runner else {}))
        if "://" not in source:
            # Fail fast, before Prefect starts, on a malformed local catalogue (the flow checks too).
            load_catalog(source, limit=limit, batch=batch)
        summary = run_flow_with_progress(
            task_runner=task_runner,
            source=source, dataset=dataset, provider=provider, chunk_size=chunk_size, concurrency=concurrency,
            embedding_dim=embedding_dim, limit=limit, force=force, batch=batch, retry_failures=retry_failures,
        )
    except EnrichmentError as exc:
        _fail(exc)
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
    frame = Dataset(dataset).read_assets(columns=columns, version=version).sort_values("image_id").head(limit)
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
    """List the assets table's versions with their commit metadata."""
    from media_enrichment.dataset import Dataset

    entries = Dataset(dataset).history(limit=limit)
    if not entries:
        _fail(EnrichmentError(f"no dataset at {dataset} yet: run an enrichment first"))
    table = Table(title=f"{dataset}/assets history")
    columns = ("version", "timestamp", "operation", "run_id", "enriched", "failed", "reused", "enrichment_model",
               "embedding_model", "prompt_version")
    for column in columns:
        table.add_column(column, overflow="fold")
    for entry in entries:
        entry = {**entry, "timestamp": _timestamp(entry.get("timestamp"))}
        table.add_row(*[str(entry.get(column, "-")) for column in columns])
    console.print(table)


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

    if csv.exists() and not overwrite:
        _fail(EnrichmentError(f"{csv} exists; pass --overwrite to replace it"))
    try:
        frame = Dataset(dataset).read_assets(version=version)
    except EnrichmentError as exc:
        _fail(exc)
    out = frame.sort_values("image_id").assign(
        path=frame["source_uri"],
        keywords=frame["keywords"].map(lambda v: ", ".join(v)),
        tags=frame["tags"].map(lambda v: ", ".join(v)),
        ocr_texts=frame["ocr_texts"].map(lambda v: json.dumps(list(v))),
        embeddings=frame["embedding"].map(lambda v: json.dumps([round(float(x), 6) for x in v])),
    )[["image_id", "path", "title", "description", "keywords", "tags", "ocr_texts", "embeddings"]]
    csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(csv, index=False)
    console.print(f"Wrote {len(out)} rows to {csv}")


from media_enrichment import cli_explore  # noqa: E402

cli_explore.register(app)


@app.command()
def failures(
    dataset: DatasetOpt = DEFAULT_DATASET,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 50,
) -> None:
    """List images whose last attempt failed (retried by the next run unless left alone)."""
    from media_enrichment.dataset import Dataset

    frame = Dataset(dataset).read_failures().sort_values("image_id")
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
    retention_hours: Annotated[int, typer.Option(min=0, help="Keep files needed by versions this recent.")] = 168,
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
    file: Annotated[Path, typer.Option(help="The deployments file.")] = Path("deployments/prefect.yaml"),
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset for every deployment.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Catalogue of the scheduled deployment.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Flow runs at once in this process.")] = None,
) -> None:
    """Serve the deployments of deployments/prefect.yaml (schedules, backfills) from this process."""
    if "PREFECT_API_URL" not in os.environ:
        console.print(
            "[yellow]PREFECT_API_URL is not set:[/] serving against a temporary server that lives only as long as "
            "this process. Start `prefect server start` and export PREFECT_API_URL to watch runs in the UI."
        )
    prepare_prefect_environment(verbose=True)
    from flows.deployments import serve_deployments

    overrides = {k: v for k, v in {"dataset": dataset, "source": source}.items() if v is not None}
    serve_deployments(file, overrides=overrides, limit=limit)


@app.command()
def backfill(
    source: Annotated[str, typer.Argument(help="Manifest with a batch column, or a folder/prefix with {batch} in it.")],
    batch: Annotated[Optional[list[str]], typer.Option("--batch", "-b", help="A batch label (repeatable).")] = None,
    start: Annotated[Optional[str], typer.Option(help="First day of a date range (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last day of a date range (YYYY-MM-DD).")] = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    provider: Annotated[str, typer.Option(help="'local' or 'bedrock'.")] = "local",
    deployment: Annotated[str, typer.Option(help="The enrichment deployment to run.")] = "enrich-catalog/backfill",
) -> None:
    """Launch one flow run per batch through the backfill deployment; repeating it runs nothing twice."""
    from datetime import date

    prepare_prefect_environment()
    from prefect.exceptions import ObjectNotFound

    from flows.backfill import batch_labels, launch_backfill

    try:
        labels = batch_labels(
            batches=batch, start=date.fromisoformat(start) if start else None, end=date.fromisoformat(end) if end else None
        )
    except ValueError as exc:
        _fail(exc)
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
    from media_enrichment.providers.bedrock import METADATA_TOOL

    try:
        settings = Settings(provider="bedrock", **({"describer_model_id": model} if model else {}))
        client = s3_client(settings) if source.startswith("s3://") else None
        catalog = load_catalog(source, s3_client=client, limit=limit)
        template = load_prompt(prompt or settings.prompt_file)
        result = estimate_catalog(
            catalog,
            read=lambda uri: read_bytes(uri, s3_client=client),
            enrichment_model=settings.describer_model_id,
            embedding_model=settings.embedder_model_id,
            prompt_tokens_per_image=text_tokens(template.text) + text_tokens(json.dumps(METADATA_TOOL)),
            output_tokens_per_image=output_tokens,
            prices=load_prices(prices or settings.price_file),
        )
    except EnrichmentError as exc:
        _fail(exc)
    table = Table(title=f"Estimate for {source}", show_header=False)
    rows = {
        "describer": settings.describer_model_id,
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


if __name__ == "__main__":  # pragma: no cover
    app()
