"""Commands that run or plan work: ``run``, ``demo``, ``serve``, ``backfill``, ``estimate``.

Prefect is imported only inside them, after its environment is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer
import typer.core
from rich.table import Table

from media_enrichment.catalog import load_catalog
from media_enrichment.config import InvocationName, Settings, build_settings, env_name
from media_enrichment.errors import ConfigError, EnrichmentError
from media_enrichment_prefect.cli.app import DEFAULT_DATASET, DatasetOpt, _fail, app, console
from media_enrichment_prefect.cli.running import prepare_prefect_environment, run_flow_with_progress

def _print_summary(result: dict[str, Any]) -> None:
    """The run's summary (the flow's return value, a ``RunSummary`` as data) as a table."""
    from media_enrichment.pipeline.summary import RunSummary

    summary = RunSummary.from_dict(result)
    table = Table(title="Enrichment run", show_header=False)
    for key in (
        "source", "dataset", "batch", "catalog_rows", "reused", "enriched", "failed", "given_up", "chunks",
        "task_runner", "input_tokens", "output_tokens", "assets_version", "failures_version", "duration_s",
        "images_per_s", "estimated_cost_usd", "enrichment_model", "embedding_model", "prompt_version", "embedding_dim", "run_id",
    ):
        value = getattr(summary, key)
        table.add_row(key, "-" if value is None else str(value))
    if summary.batch_jobs or summary.invocation != "on-demand":
        # The batch part's cost beside what the same work costs on demand.
        for key in ("invocation", "batch_jobs", "batch_images", "batch_on_demand", "batch_cost_usd", "batch_on_demand_cost_usd"):
            value = getattr(summary, key)
            table.add_row(key, "-" if value is None else str(value))
    if summary.stopped:
        table.add_row("stopped", f"{summary.stopped}; {summary.deferred} images left for the next run")
    console.print(table)


#: Settings whose option is not named after them.
_OPTIONS = {"max_cost_usd": "--max-cost", "allowed_roots": "--allow-root"}


def _option_name(field: str) -> str:
    return _OPTIONS.get(field) or "--" + field.replace("_", "-")


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


_ALLOW_ROOT_HELP = (
    "A folder or s3://bucket/prefix the catalogue's paths may also point into, besides the manifest's own folder "
    "or prefix (repeatable); paths anywhere else are failure rows, never read "
    f"(default: ${env_name('allowed_roots')}, comma- or {os.pathsep!r}-separated, else none)."
)


def _roots(given: list[str] | None) -> list[str] | None:
    """``--allow-root`` values, local ones made absolute here (the run may execute elsewhere)."""
    roots = [root.strip() for root in given or () if root.strip()]  # a blank one is not the current folder
    return [root if "://" in root else os.path.abspath(os.path.expanduser(root)) for root in roots] or None


def _check_run(source: str, settings: Settings) -> None:
    """Refuse a run for what can be checked without Prefect or any model: a local dataset
    location, a local catalogue, the price file, and for Bedrock the prompt file and a region."""
    from media_enrichment.aws import resolve_region
    from media_enrichment.cost import load_prices
    from media_enrichment.dataset import Dataset

    if "://" not in settings.dataset:  # the flow checks S3 datasets, with the run's credentials
        Dataset(settings.dataset).check_writable()

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
    max_images: Annotated[Optional[int], typer.Option(help=_setting_help("max_images", unset="no limit"))] = None,
    max_cost: Annotated[
        Optional[float], typer.Option("--max-cost", metavar="USD", help=_setting_help("max_cost_usd", unset="no limit"))
    ] = None,
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
    allow_root: Annotated[
        Optional[list[str]], typer.Option("--allow-root", metavar="DIR", help=_ALLOW_ROOT_HELP)
    ] = None,
    invocation: Annotated[
        Optional[str], typer.Option(help=_setting_help("invocation", "'on-demand', 'batch' (Bedrock batch jobs) or 'auto'."))
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Submit and record the batch jobs, then return; the next run of the same work follows them.",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Enrich a catalogue into the dataset (skips images already enriched with the same models).

    An option left out takes its MEDIA_ENRICH_* variable, else the settings' default.
    """
    given = {
        "dataset": dataset, "provider": provider, "chunk_size": chunk_size, "concurrency": concurrency,
        "embedding_dim": embedding_dim, "limit": limit, "force": force, "batch": batch,
        "retry_failures": retry_failures, "task_runner": task_runner, "allowed_roots": _roots(allow_root),
        "max_images": max_images, "max_cost_usd": max_cost, "invocation": invocation,
    }
    cluster = {"dask_address": dask_address, "dask_workers": dask_workers}
    # Everything that can be refused is, before Prefect starts and before any model is called.
    _check_run(source, _settings(**given, **cluster))
    # The Dask cluster is a setting of the process running the flow, not a flow parameter.
    for name, value in cluster.items():
        if value is not None:
            os.environ[env_name(name)] = str(value)
    prepare_prefect_environment(verbose=verbose)
    extra = {"wait_for_batch": False} if no_wait else {}
    summary = run_flow_with_progress(source=source, **{k: v for k, v in given.items() if v is not None}, **extra)
    _print_summary(summary)


@app.command()
def collect(
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", "-d", help=_setting_help("dataset", "Dataset root (local folder or s3:// URI)."))
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Follow the batch jobs recorded in the dataset (by `run --no-wait`, or a run that died) and commit their rows.

    Each recorded run's catalogue is planned again with the current settings; only images whose
    records are in a recorded job are enriched, and no job is submitted.
    """
    from media_enrichment.dataset import Dataset
    from media_enrichment.pipeline.batch import recorded_runs

    settings = _settings(dataset=dataset, provider="bedrock", invocation="batch")
    runs = recorded_runs(Dataset(settings.dataset).staging_dir)
    work = list(dict.fromkeys((run.source, run.batch) for run in runs if run.source))
    if not work:
        console.print(f"No batch jobs recorded in {settings.dataset}.")
        return
    prepare_prefect_environment(verbose=verbose)
    for source, batch in work:
        given = {"dataset": settings.dataset, "provider": "bedrock", "invocation": "batch", "batch": batch}
        summary = run_flow_with_progress(
            source=source, **{k: v for k, v in given.items() if v is not None}, collect_only=True
        )
        _print_summary(summary)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Where the sample catalogue is generated.")] = Path("data/sample"),
    dataset: DatasetOpt = DEFAULT_DATASET,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Generate the sample catalogue and enrich it offline with the local provider."""
    from media_enrichment.sample import generate_sample_catalog
    from media_enrichment_prefect.cli.dataset import _print_rows  # registered after these commands

    manifest = generate_sample_catalog(folder)
    console.print(f"Sample catalogue: [bold]{manifest}[/]")
    prepare_prefect_environment(verbose=verbose)
    summary = run_flow_with_progress(source=str(manifest), dataset=dataset, provider="local")
    _print_summary(summary)
    _print_rows(dataset, limit=8, version=None)


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
    allow_root: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-root", metavar="DIR",
            help=_ALLOW_ROOT_HELP.replace("(default:", "(sent with every run; default: the running process's"),
        ),
    ] = None,
    invocation: Annotated[
        Optional[str],
        typer.Option(
            help="'on-demand', 'batch' (Bedrock batch jobs) or 'auto', sent with every run (default: the deployment's, "
            "auto for the backfill deployment, else the running process's MEDIA_ENRICH_INVOCATION)."
        ),
    ] = None,
) -> None:
    """Launch one flow run per batch through the backfill deployment; repeating it runs nothing twice.

    Only the options given are sent with the runs; the rest comes from the settings of the
    process that executes them (`serve` or a worker).
    """
    from datetime import date

    roots = _roots(allow_root)
    settings = _settings(dataset=dataset, provider=provider, allowed_roots=roots)
    if invocation is not None and invocation not in get_args(InvocationName):
        # Only its spelling: the rest (role, S3 location) is the running process's settings.
        _fail(ConfigError(f"--invocation: must be 'on-demand', 'batch' or 'auto' (got {invocation})"))
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
        runs = launch_backfill(
            source=source, batch_list=labels, dataset=dataset, provider=provider, deployment=deployment,
            # Only what was given: the rest is the deployment's, then the running process's settings.
            parameters={"allowed_roots": roots, **({"invocation": invocation} if invocation else {})},
        )
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
    from media_enrichment.catalog import read_bytes, roots_for
    from media_enrichment.cost import estimate_catalog, load_prices
    from media_enrichment.tokens import text_tokens
    from media_enrichment.prompts import load_prompt
    from media_enrichment.aws import resolve_region
    from media_enrichment.providers.bedrock.answers import METADATA_TOOL
    from media_enrichment.providers.bedrock.models import resolve_describer_model

    try:
        settings = Settings(provider="bedrock", **({"describer_model_id": model} if model else {}))
        # The id a run would call: the configured one, or the default's profile for the region.
        describer = resolve_describer_model(
            resolve_region(settings.aws_region, profile=settings.aws_profile), settings.describer_model_id
        )
        client = s3_client(settings) if source.startswith("s3://") else None
        catalog = load_catalog(source, s3_client=client, limit=limit)
        roots = roots_for(source, settings.allowed_roots)  # what a run would read, and no more
        template = load_prompt(prompt or settings.prompt_file)
        result = estimate_catalog(
            catalog,
            read=lambda uri: read_bytes(uri, s3_client=client, roots=roots, max_bytes=settings.max_image_bytes),
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
        "with batch inference (USD)": (
            "no batch price" if result.batch_cost_usd is None else f"{result.batch_cost_usd:.4f}"
        ),
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)
