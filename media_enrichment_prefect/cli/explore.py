"""Commands that query and explore an enriched dataset: search, similar, heatmap, duplicates.

They read the Delta table and never start Prefect. ``register(app)`` adds them to the
``media-enrich`` Typer app (see ``cli/__init__.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from media_enrichment.errors import EnrichmentError
from media_enrichment.explore import DEFAULT_DUPLICATE_THRESHOLD

console = Console()

DEFAULT_DATASET = "data/dataset"
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset root (local folder or s3:// URI).")]
VersionOpt = Annotated[Optional[int], typer.Option(help="Table version (time travel).")]
KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")]
TagOpt = Annotated[
    Optional[list[str]], typer.Option("--tag", "-t", help="Only images with this tag (repeatable: all must match).")
]
KeywordOpt = Annotated[
    Optional[list[str]], typer.Option("--keyword", help="Only images with this keyword (repeatable: all must match).")
]


def _fail(exc: BaseException) -> NoReturn:
    """Stop on a user's mistake: the app prints one ``error:`` line (``-v`` adds the traceback)."""
    if isinstance(exc, EnrichmentError):
        raise exc
    raise EnrichmentError(str(exc)) from exc


def _load_index(dataset: str, version: int | None):
    from media_enrichment.dataset import Dataset
    from media_enrichment.search import VectorIndex

    return VectorIndex.from_dataset(Dataset(dataset), version=version)


def _print_hits(hits, *, title: str) -> None:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("image_id", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("title", overflow="fold")
    table.add_column("tags", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), hit.image_id, f"{hit.score:.3f}", hit.title, ", ".join(hit.tags))
    console.print(table)
    if not hits:
        console.print("No image matches the filters.")


def search(
    text: Annotated[
        Optional[str], typer.Argument(help="What to look for (the local embedder knows colour words only).")
    ] = None,
    image: Annotated[Optional[Path], typer.Option(help="Search with an image file instead of a text.")] = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    k: KOpt = 10,
    tag: TagOpt = None,
    keyword: KeywordOpt = None,
    version: VersionOpt = None,
    provider: Annotated[
        Optional[str],
        typer.Option(help="'local' or 'bedrock'; default: the provider that made the dataset's vectors (must match)."),
    ] = None,
    region: Annotated[Optional[str], typer.Option(help="AWS region for Bedrock queries.")] = None,
    profile: Annotated[Optional[str], typer.Option(help="AWS profile for Bedrock queries.")] = None,
) -> None:
    """Find the images closest to a text (or an image file), embedded by the dataset's own model."""
    from media_enrichment.config import Settings
    from media_enrichment.search import embedder_for, search_image, search_text

    if (text is None) == (image is None):
        _fail(EnrichmentError("give either a query text or --image PATH"))
    try:
        index = _load_index(dataset, version)
        overrides = {"dataset": dataset}
        if region:
            overrides["aws_region"] = region
        if profile:
            overrides["aws_profile"] = profile
        embedder = embedder_for(index, Settings(**overrides), provider=provider)
        if image is not None:
            if not image.is_file():
                raise EnrichmentError(f"{image} is not a file")
            hits = search_image(index, embedder, image.read_bytes(), k=k, tags=tag, keywords=keyword)
            query = str(image)
        else:
            hits = search_text(index, embedder, text, k=k, tags=tag, keywords=keyword)
            query = repr(text)
    except (EnrichmentError, ValueError) as exc:
        _fail(exc)
    _print_hits(hits, title=f"{query} in {dataset} ({index.embedding_model})")


def similar(
    image_id: Annotated[str, typer.Argument(help="An image of the dataset.")],
    dataset: DatasetOpt = DEFAULT_DATASET,
    k: KOpt = 10,
    tag: TagOpt = None,
    keyword: KeywordOpt = None,
    version: VersionOpt = None,
) -> None:
    """Find the images closest to one of the dataset's images (by its stored vector)."""
    from media_enrichment.search import similar as similar_to

    try:
        index = _load_index(dataset, version)
        hits = similar_to(index, image_id, k, tags=tag, keywords=keyword)
    except (EnrichmentError, ValueError) as exc:
        _fail(exc)
    _print_hits(hits, title=f"like {image_id} in {dataset}")


def heatmap(
    dataset: DatasetOpt = DEFAULT_DATASET,
    out: Annotated[
        Optional[Path], typer.Option(help="PNG to write (default: <dataset>/reports/similarity.png).")
    ] = None,
    max_images: Annotated[int, typer.Option(min=1, help="At most this many images (the first by image_id).")] = 60,
    version: VersionOpt = None,
) -> None:
    """Draw the cosine similarity of the dataset's images as a PNG heatmap."""
    from media_enrichment.explore import similarity_heatmap

    try:
        if out is None:
            if "://" in dataset:
                raise EnrichmentError("the dataset is remote: pass --out PATH for the PNG")
            out = Path(dataset) / "reports" / "similarity.png"
        index = _load_index(dataset, version)
        written = similarity_heatmap(index, out, max_images=max_images)
    except (EnrichmentError, ValueError) as exc:
        _fail(exc)
    shown = min(max_images, len(index))
    table = Table(title="Similarity heatmap", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # a long path folds onto more lines, never cut short
    table.add_row("file", str(written))
    table.add_row("images", f"{shown} of {len(index)}" + (" (first by image_id)" if shown < len(index) else ""))
    table.add_row("embedding_model", f"{index.embedding_model} ({index.dim} dims)")
    console.print(table)


def duplicates(
    dataset: DatasetOpt = DEFAULT_DATASET,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Cosine similarity at or above which images are near-duplicates. 0.9 separates the local "
            "embedder's crops/resizes/re-encodes (>= 0.93) from look-alike scenes (<= 0.88) on the sample; "
            "measure again for Titan vectors.",
        ),
    ] = DEFAULT_DUPLICATE_THRESHOLD,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write a markdown report to this file.")] = None,
    version: VersionOpt = None,
) -> None:
    """List groups of near-duplicate images (linked by cosine similarity >= --threshold)."""
    from media_enrichment.explore import duplicates_report, near_duplicate_groups

    try:
        index = _load_index(dataset, version)
        groups = near_duplicate_groups(index, threshold=threshold)
        if markdown is not None:
            markdown.parent.mkdir(parents=True, exist_ok=True)
            markdown.write_text(duplicates_report(groups, index, threshold=threshold), encoding="utf-8")
    except (EnrichmentError, ValueError) as exc:
        _fail(exc)
    table = Table(title=f"Near-duplicate groups (cosine >= {threshold:.2f}) in {dataset}")
    table.add_column("group", justify="right")
    table.add_column("size", justify="right")
    table.add_column("image ids", overflow="fold")
    for number, group in enumerate(groups, 1):
        table.add_row(str(number), str(len(group)), ", ".join(group))
    console.print(table)
    in_groups = sum(len(g) for g in groups)
    console.print(f"{len(groups)} group(s), {in_groups} of {len(index)} images.")
    if markdown is not None:
        console.print(f"Report written to {markdown}")


def register(app: typer.Typer) -> None:
    """Add the exploration commands to the ``media-enrich`` app."""
    app.command("search")(search)
    app.command("similar")(similar)
    app.command("heatmap")(heatmap)
    app.command("duplicates")(duplicates)
