"""Commands over a dataset's tables: ``show``, ``history``, ``export``, ``failures``, ``rollback``,
``compact``, ``vacuum``. None of them starts Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core
from rich.table import Table
from rich.text import Text

from media_enrichment.errors import DatasetError, EnrichmentError
from media_enrichment_prefect.cli.app import DEFAULT_DATASET, DatasetOpt, _fail, app, console

def _print_rows(dataset: str, *, limit: int, version: int | None) -> None:
    from media_enrichment.dataset import Dataset
    from media_enrichment.schema import clean_line

    columns = ["image_id", "title", "tags", "ocr_texts", "embedding_dim"]
    # assets_table, not read_assets: a mistyped --dataset is an error, not an empty table
    frame = Dataset(dataset).assets_table(version=version).to_pandas(columns=columns).sort_values("image_id").head(limit)
    table = Table(title=f"{dataset} (first {len(frame)} rows)")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in frame.to_dict("records"):
        # Cleaned again for the terminal: rows written before answers were cleaned may hold escapes.
        # Text cells: a title holding "[bold]" is shown as written, not as Rich markup.
        table.add_row(*[
            Text(clean_line(", ".join(map(str, v)) if hasattr(v, "__len__") and not isinstance(v, str) else str(v)))
            for v in record.values()
        ])
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
