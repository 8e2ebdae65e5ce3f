"""Run reports in the Prefect UI: a progress artifact, a summary, the failures, the heatmap."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from media_enrichment import progress
from media_enrichment.dataset import Dataset
from media_enrichment.errors import EnrichmentError
from media_enrichment.explore import similarity_heatmap
from media_enrichment.pipeline.batch import BatchProgress
from media_enrichment.pipeline.summary import RunSummary
from media_enrichment.report import artifact_key, failure_records, summary_markdown
from media_enrichment.search import VectorIndex

logger = logging.getLogger(__name__)

#: Images drawn in a run's heatmap (the first by image_id), as the original notebook showed.
HEATMAP_IMAGES = 60


class RunProgress:
    """Progress of a run: the CLI's bar (through progress events) and a Prefect progress artifact."""

    def __init__(self, *, total: int, dataset: str):
        self.total = total
        self.done = 0
        progress.report(total=total, label="enriching")
        self.artifact_id = create_progress_artifact(
            progress=100.0 if total == 0 else 0.0,
            key=artifact_key("progress", dataset),
            description=f"Images enriched or failed, of {total}",
        )

    def advance(self, count: int) -> None:
        self.done += count
        progress.report(advance=count)
        update_progress_artifact(self.artifact_id, progress=100.0 if self.total == 0 else 100.0 * self.done / self.total)


class BatchJobsProgress:
    """Progress of a run's batch jobs (records processed of all their records): the CLI bar's label
    (through progress events), a line in the run's log when it changes, and a Prefect progress
    artifact. Called by the batch step after each look at its jobs."""

    def __init__(self, *, dataset: str, bar_total: int):
        self.bar_total = bar_total
        self.last: str | None = None
        self.artifact_id = create_progress_artifact(
            progress=0.0, key=artifact_key("batch-progress", dataset),
            description="Batch inference: records processed by the run's jobs, of all their records",
        )

    def __call__(self, state: BatchProgress) -> None:
        states = ", ".join(f"{n} {status}" for status, n in sorted(state.states.items()))
        label = f"batch jobs: {state.processed}/{state.records} records, {state.done}/{state.jobs} jobs done ({states})"
        if label != self.last:
            self.last = label
            progress.report(total=self.bar_total, label=label)
            try:
                get_run_logger().info(label)
            except Exception:  # noqa: BLE001 - outside a run context: the bar and the artifact still show it
                logger.info(label)
        update_progress_artifact(self.artifact_id, progress=state.percent)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(summary: RunSummary, *, dataset: Dataset, heatmap: bool = True) -> str | None:
    """Publish the run's summary, failures and similarity heatmap as Prefect artifacts."""
    heatmap_uri = None
    if heatmap and dataset.is_local:
        existing = Path(dataset.root, "reports", "similarity.png")
        if summary.assets_version is not None:  # the table changed: draw it again
            heatmap_uri = _draw_heatmap(dataset, existing)
        elif existing.is_file():
            heatmap_uri = existing.resolve().as_uri()
    root = dataset.root
    create_markdown_artifact(
        summary_markdown(summary, heatmap_uri=heatmap_uri), key=artifact_key("summary", root), description="Run summary"
    )
    create_table_artifact(
        failure_records(dataset.read_failures()) or [{"image_id": "-", "message": "no failures"}],
        key=artifact_key("failures", root),
        description="Images whose last attempt failed",
    )
    if heatmap_uri:
        create_link_artifact(
            heatmap_uri, link_text="Similarity heatmap", key=artifact_key("heatmap", root),
            description="Cosine similarity of the images' vectors",
        )
    return heatmap_uri


def _draw_heatmap(dataset: Dataset, path: Path, *, max_images: int = HEATMAP_IMAGES) -> str | None:
    # Only the vectors the heatmap shows are loaded: the table may hold millions of rows.
    ids = sorted(dataset.read_assets(columns=["image_id"])["image_id"])[:max_images]
    try:
        index = VectorIndex.from_dataset(dataset, image_ids=ids)
        path = similarity_heatmap(index, path, max_images=max_images)
    except EnrichmentError as exc:  # e.g. a dataset mixing embedding models
        logger.warning("No similarity heatmap: %s", exc)
        return None
    return Path(path).resolve().as_uri()
