"""Turn deployments/prefect.yaml into deployments served from this process (`media-enrich serve`).

The YAML stays the one description of the deployments: `prefect deploy` reads it for work pools,
and this module reads the same entries for `serve` (work pool settings do not apply there).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "deployments" / "prefect.yaml"


def _load_flow(entrypoint: str) -> Flow:
    """``flows/enrich.py:enrich_catalog`` -> the flow object."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def _schedules(entries: list[dict[str, Any]] | None) -> list[Any]:
    schedules = []
    for entry in entries or []:
        active = entry.get("active", True)
        if "cron" in entry:
            schedules.append(Cron(entry["cron"], timezone=entry.get("timezone"), active=active))
        elif "interval" in entry:
            schedules.append(Interval(entry["interval"], timezone=entry.get("timezone"), active=active))
        else:
            raise ValueError(f"unsupported schedule (use cron or interval): {entry}")
    return schedules


def load_deployments(path: Path = DEFAULT_FILE, *, overrides: dict[str, Any] | None = None) -> list[RunnerDeployment]:
    """Build the deployments of a prefect.yaml for serving.

    Args:
        path: the prefect.yaml.
        overrides: parameters set on every deployment whose flow takes them (e.g. dataset).

    Returns:
        One RunnerDeployment per entry.
    """
    spec = yaml.safe_load(Path(path).read_text())
    deployments = []
    for entry in spec.get("deployments", []):
        flow = _load_flow(entry["entrypoint"])
        accepted = set(flow.parameters.properties)
        parameters = {**entry.get("parameters", {}), **{k: v for k, v in (overrides or {}).items() if k in accepted}}
        deployments.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters=parameters,
                schedules=_schedules(entry.get("schedules")),
                concurrency_limit=entry.get("concurrency_limit"),
            )
        )
    return deployments


def serve_deployments(path: Path = DEFAULT_FILE, *, overrides: dict[str, Any] | None = None, limit: int | None = None) -> None:
    """Serve the deployments of a prefect.yaml until interrupted."""
    serve(*load_deployments(path, overrides=overrides), limit=limit)
