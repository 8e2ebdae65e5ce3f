"""Turn deployments/prefect.yaml into deployments served from this process (`media-enrich serve`).

The YAML stays the one description of the deployments: `prefect deploy` reads it for work pools,
and this module reads the same entries for `serve` (work pool settings do not apply there).

``load_deployments`` checks the whole file before anything is served: it exists and parses,
each entry names one of the project's flows and only parameters that flow takes, and the values
that are settings are valid (with the serving process's ``MEDIA_ENRICH_*`` environment, which
fills every parameter a deployment leaves out when its runs execute).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

from media_enrichment.config import Settings, build_settings
from media_enrichment.errors import ConfigError

#: Where the project's flows are, as an entrypoint names them.
_FLOWS = "media_enrichment_prefect/flows"
#: The project's own deployments file, found from the installed package (not the working directory).
DEFAULT_FILE = Path(__file__).resolve().parent.parent.parent / "deployments" / "prefect.yaml"


def _load_flow(entrypoint: str) -> Flow:
    """``media_enrichment_prefect/flows/enrich.py:enrich_catalog`` -> the flow object.

    Raises:
        ConfigError: the entrypoint does not name a flow of this project's ``flows`` package.
    """
    path, _, name = entrypoint.partition(":")
    module_name = path.removesuffix(".py").replace("/", ".")
    if not (path.startswith(f"{_FLOWS}/") and path.endswith(".py") and name and module_name.count(".") == 2):
        raise ConfigError(f"entrypoint {entrypoint!r} is not '{_FLOWS}/<module>.py:<flow function>'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ConfigError(f"entrypoint {entrypoint!r}: there is no {path} in the project") from None
    found = getattr(module, name, None)
    if not isinstance(found, Flow):
        flows = sorted(n for n, v in vars(module).items() if isinstance(v, Flow))
        raise ConfigError(f"entrypoint {entrypoint!r} names no flow (flows in {path}: {', '.join(flows) or 'none'})")
    return found


def _read_file(path: Path) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of a prefect.yaml, or a ConfigError saying what is wrong."""
    if not path.is_file():
        if path == DEFAULT_FILE:
            raise ConfigError(
                f"the project's deployments file {path} is missing (installed without the repository's "
                "deployments/ folder?): pass --file"
            )
        raise ConfigError(f"deployments file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"deployments file {path} cannot be read: {exc}") from None
    entries = spec.get("deployments") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path} has no 'deployments:' list")
    for position, entry in enumerate(entries, start=1):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("entrypoint"), str)):
            raise ConfigError(f"{path}: deployment #{position} needs a 'name' and an 'entrypoint'")
    return entries


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
    """Build the deployments of a prefect.yaml for serving, checking all of it first.

    Args:
        path: the prefect.yaml.
        overrides: parameters set on every deployment whose flow takes them (e.g. dataset).

    Returns:
        One RunnerDeployment per entry.

    Raises:
        ConfigError: the file is missing or malformed, an entry names no flow of the project or
            a parameter its flow does not take, or a setting's value (a parameter's, or a
            ``MEDIA_ENRICH_*`` variable's) is invalid.
    """
    path = Path(path)
    deployments = []
    for entry in _read_file(path):
        where = f"{path}: deployment {entry['name']!r}"
        try:
            flow = _load_flow(entry["entrypoint"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        accepted = set(flow.parameters.properties)
        given = entry.get("parameters") or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{where}: 'parameters' must be a mapping")
        unknown = sorted(set(given) - accepted)
        if unknown:
            raise ConfigError(
                f"{where}: {flow.name} takes no parameter {', '.join(unknown)} (it takes: {', '.join(sorted(accepted))})"
            )
        parameters = {**given, **{k: v for k, v in (overrides or {}).items() if k in accepted}}
        # The values a run will take from Settings, checked now rather than when a run starts.
        build_settings(
            {k: v for k, v in parameters.items() if k in Settings.model_fields},
            name_of=lambda field, where=where: f"{where}: parameter {field}",
        )
        try:
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
        except (ValueError, TypeError) as exc:  # a bad schedule or limit
            raise ConfigError(f"{where}: {exc}") from None
    return deployments


def serve_deployments(path: Path = DEFAULT_FILE, *, overrides: dict[str, Any] | None = None, limit: int | None = None) -> None:
    """Serve the deployments of a prefect.yaml until interrupted."""
    serve(*load_deployments(path, overrides=overrides), limit=limit)
