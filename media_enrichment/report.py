"""What a run reports: its summary as markdown, artifact keys that version across runs."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from media_enrichment.pipeline.summary import RunSummary

_SUMMARY_ROWS = (
    ("Images in the catalogue", "catalog_rows"),
    ("Enriched", "enriched"),
    ("Reused (already enriched)", "reused"),
    ("Failed", "failed"),
    ("Left alone (failed before, same bytes)", "given_up"),
    ("Input tokens", "input_tokens"),
    ("Output tokens", "output_tokens"),
    ("Estimated cost (USD)", "estimated_cost_usd"),
    ("Duration (s)", "duration_s"),
    ("Images per second", "images_per_s"),
    ("Dataset version (assets)", "assets_version"),
    ("Describer", "enrichment_model"),
    ("Embedder", "embedding_model"),
    ("Prompt version", "prompt_version"),
    ("Batch", "batch"),
)


def artifact_key(kind: str, dataset: str) -> str:
    """A Prefect artifact key (lower-case letters, digits, dashes) fixed per kind and dataset, so
    that each run adds a version of the same artifact."""
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[-40:].strip("-")
    digest = hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return f"{kind}-{slug}-{digest}" if slug else f"{kind}-{digest}"


def summary_markdown(summary: RunSummary, *, heatmap_uri: str | None = None) -> str:
    """The run summary as a markdown table, with a link to the similarity heatmap."""
    lines = [f"# Enrichment of `{summary.source}`", "", f"Dataset `{summary.dataset}`", ""]
    lines += ["| | |", "|---|---|"]
    for label, key in _SUMMARY_ROWS:
        value = getattr(summary, key)
        if isinstance(value, float) and key == "estimated_cost_usd":
            value = f"{value:.4f}"
        lines.append(f"| {label} | {'-' if value is None else value} |")
    if summary.batch_jobs or summary.invocation != "on-demand":
        # Batch inference: its cost beside what the same work costs on demand.
        for label, key in (
            ("Invocation", "invocation"), ("Batch jobs", "batch_jobs"), ("Described by batch jobs", "batch_images"),
            ("Batch work finished on demand", "batch_on_demand"), ("Batch cost (USD)", "batch_cost_usd"),
            ("Same work on demand (USD)", "batch_on_demand_cost_usd"),
        ):
            value = getattr(summary, key)
            lines.append(f"| {label} | {'-' if value is None else (f'{value:.4f}' if isinstance(value, float) else value)} |")
    if heatmap_uri:
        lines += ["", f"Similarity heatmap: [{heatmap_uri}]({heatmap_uri})"]
    return "\n".join(lines) + "\n"


def failure_records(failures: pd.DataFrame, *, limit: int = 500) -> list[dict[str, Any]]:
    """Rows of the failures table for a table artifact (newest first, messages shortened)."""
    if failures.empty:
        return []
    frame = failures.sort_values("at", ascending=False).head(limit)
    return [
        {
            "image_id": r.image_id,
            "stage": r.stage,
            "error_type": r.error_type,
            "attempts": int(r.attempts),
            "permanent": bool(r.permanent) if pd.notna(r.permanent) else False,
            "message": str(r.message)[:300],
        }
        for r in frame.itertuples()
    ]
