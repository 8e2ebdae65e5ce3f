"""Which Claude model: the default, cross-Region inference profiles, and model lifecycle.

Unless a model is configured, the describer is Claude Haiku 4.5 through the cross-Region
inference profile of the run's region's geography (``resolve_describer_model``): Claude 4.x
models are not served on demand by their bare id. A configured model id, profile id or ARN is
used verbatim. Where the caller may call ``bedrock:GetFoundationModel``, ``model_lifecycle``
looks the model up and ``warn_if_legacy`` says when it is ``LEGACY`` and what to set instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from media_enrichment.aws import bedrock_control_client
from media_enrichment.config import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DESCRIBER_BASE_MODEL",
    "DESCRIBER_SETTING",
    "PROFILE_GEOGRAPHIES",
    "ModelLifecycle",
    "base_model_id",
    "control_client_for",
    "model_lifecycle",
    "profile_geography",
    "resolve_describer_model",
    "suggestion",
    "warn_if_legacy",
]

#: The default describer, Claude Haiku 4.5, called through an inference profile: Claude 4.x
#: models are served on demand only through one (the bare id is refused).
DEFAULT_DESCRIBER_BASE_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
#: The setting a user changes to pick another describer (named in the fix lines).
DESCRIBER_SETTING = "MEDIA_ENRICH_DESCRIBER_MODEL_ID"

#: Region (or region prefix) -> geography of Claude Haiku 4.5's cross-Region inference profiles
#: (its Bedrock model card lists us., eu., jp., au. and global.). The longest match wins; a
#: region matching none (Canada, South America, most of Asia Pacific, GovCloud, or an unknown
#: region) uses the global profile.
_HAIKU_45_GEOGRAPHIES: dict[str, str] = {
    "us-gov-": "global",  # GovCloud has no us. profile of this model: set the model id explicitly there
    "us-": "us",
    "eu-": "eu",
    "ap-northeast-1": "jp",  # Tokyo
    "ap-northeast-3": "jp",  # Osaka
    "ap-southeast-2": "au",  # Sydney
    "ap-southeast-4": "au",  # Melbourne
}
#: Prefixes of system-defined (cross-Region) inference profile ids.
PROFILE_GEOGRAPHIES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "in", "global")


def profile_geography(region: str | None) -> str:
    """The geography of the default model's inference profile for a region.

    Args:
        region: the AWS region of the run (``client.meta.region_name``), or ``None``.

    Returns:
        ``"us"``, ``"eu"``, ``"jp"`` or ``"au"`` where Claude Haiku 4.5 has a profile of that
        geography; ``"global"`` for any other or unknown region.
    """
    region = (region or "").strip().lower()
    matches = [prefix for prefix in _HAIKU_45_GEOGRAPHIES if region.startswith(prefix)]
    return _HAIKU_45_GEOGRAPHIES[max(matches, key=len)] if matches else "global"


def resolve_describer_model(region: str | None, model_id: str | None = None) -> str:
    """The Claude model id the describer calls: the one configured, or the default's profile.

    Args:
        region: the run's AWS region (picks the default's geography); ``None`` if unknown.
        model_id: ``settings.describer_model_id``: any model id, profile id or ARN is returned
            verbatim (without surrounding blanks); ``None`` or blank means the default.

    Returns:
        E.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` for us-east-1, ``global.anthropic…``
        for a region without a geographic profile.
    """
    if model_id is not None and model_id.strip():
        return model_id.strip()
    return f"{profile_geography(region)}.{DEFAULT_DESCRIBER_BASE_MODEL}"


def base_model_id(model_id: str) -> str | None:
    """The foundation model behind a model id, a cross-Region profile id, or their ARNs.

    Args:
        model_id: e.g. ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` or
            ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.…``.

    Returns:
        The foundation model id (``anthropic.claude-haiku-4-5-20251001-v1:0``), or ``None`` for an
        ARN that does not name one (application inference profiles, provisioned models).
    """
    model_id = model_id.strip()
    if model_id.startswith("arn:"):
        kind, _, name = model_id.split(":", 5)[-1].partition("/")
        if kind not in ("foundation-model", "inference-profile") or not name:
            return None
        model_id = name
    head, dot, rest = model_id.partition(".")
    if dot and rest and head in PROFILE_GEOGRAPHIES:
        return rest
    return model_id


@dataclass(frozen=True)
class ModelLifecycle:
    """A foundation model's lifecycle as ``GetFoundationModel`` reports it."""

    model_id: str  # the foundation model looked up
    status: str  # "ACTIVE" or "LEGACY"
    legacy_since: datetime | None = None
    end_of_life: datetime | None = None
    extended_access_from: datetime | None = None  # public extended access: higher prices from then


def model_lifecycle(control_client: Any, model_id: str) -> ModelLifecycle | None:
    """Look up the lifecycle of the foundation model behind ``model_id`` (one call, never raises).

    Args:
        control_client: a ``bedrock`` (control plane) client (``aws.bedrock_control_client``).
        model_id: a model id, profile id or ARN; a profile is looked up by its base model.

    Returns:
        The lifecycle, or ``None`` when it cannot be known: no ``bedrock:GetFoundationModel``
        permission, an unknown model, an id that names no foundation model, or any other error
        (each logged at debug level only).
    """
    base = base_model_id(model_id)
    if base is None:
        logger.debug("model lifecycle of %s not looked up: the id names no foundation model", model_id)
        return None
    try:
        details = control_client.get_foundation_model(modelIdentifier=base).get("modelDetails") or {}
    except Exception as exc:  # noqa: BLE001 - an optional look-up: AccessDenied or any error changes nothing
        logger.debug("model lifecycle of %s not looked up: %s", base, exc)
        return None
    lifecycle = details.get("modelLifecycle") or {}
    status = str(lifecycle.get("status") or "").upper()
    if not status:
        logger.debug("GetFoundationModel(%s) reported no lifecycle status", base)
        return None

    def when(key: str) -> datetime | None:
        value = lifecycle.get(key)
        return value if isinstance(value, datetime) else None

    return ModelLifecycle(
        model_id=base,
        status=status,
        legacy_since=when("legacyTime"),
        end_of_life=when("endOfLifeTime"),
        extended_access_from=when("publicExtendedAccessTime"),
    )


def _utc_day(moment: datetime) -> str:
    """``YYYY-MM-DD`` of a timestamp, in UTC (naive timestamps are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).date().isoformat()


def suggestion(model_id: str, region: str | None, unset: str = "") -> str:
    """`` such as <the default's profile>`` (plus ``unset``), unless ``model_id`` is the default's model.

    Args:
        model_id: the model a fix line is about.
        region: the run's region (picks the default's profile).
        unset: text appended to the suggestion, e.g. `` (or unset it for the default)``.

    Returns:
        The suggestion, or ``""`` when the model already is the default's.
    """
    current = resolve_describer_model(region)
    if base_model_id(current) == base_model_id(model_id):
        return ""
    return f" such as {current}{unset}"


def warn_if_legacy(found: ModelLifecycle | None, *, model_id: str, region: str | None) -> None:
    """Log one warning naming the end of life and the fix when a model is ``LEGACY``.

    Args:
        found: the lifecycle ``model_lifecycle`` looked up (``None``: nothing happens).
        model_id: the model id the describer calls.
        region: the run's region.
    """
    if found is None or found.status != "LEGACY":
        return
    eol = _utc_day(found.end_of_life) if found.end_of_life else "a date not yet announced"
    extended = (
        f"; higher prices from {_utc_day(found.extended_access_from)} (extended access)"
        if found.extended_access_from
        else ""
    )
    logger.warning(
        "model %s (%s) is LEGACY on Bedrock and reaches end of life on %s (region %s)%s: set %s to a "
        "current model%s before then",
        model_id, found.model_id, eol, region or "?", extended, DESCRIBER_SETTING, suggestion(model_id, region),
    )


def _is_aws_endpoint(url: str | None) -> bool:
    host = (url or "").split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def control_client_for(session: Any, runtime: Any, settings: Settings) -> Any:
    """The ``bedrock`` client for lifecycle look-ups, or ``None`` when it would reach another
    service than the runtime calls do (runtime pointed at a compatible endpoint, control plane
    still at AWS).

    Args:
        session: the run's boto3 session.
        runtime: the run's ``bedrock-runtime`` client.
        settings: the run's settings (AWS options).

    Returns:
        A control-plane client, or ``None`` (logged at debug level only).
    """
    try:
        control = bedrock_control_client(session, settings=settings)
    except Exception as exc:  # noqa: BLE001 - the look-up is optional
        logger.debug("no bedrock control-plane client: %s", exc)
        return None
    if _is_aws_endpoint(control.meta.endpoint_url) and not _is_aws_endpoint(runtime.meta.endpoint_url):
        logger.debug(
            "model lifecycle not looked up: bedrock-runtime goes to %s; "
            "set AWS_ENDPOINT_URL_BEDROCK for its control plane",
            runtime.meta.endpoint_url,
        )
        return None
    return control
