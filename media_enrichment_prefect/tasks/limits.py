"""Bedrock quotas shared by every run and worker: Prefect global concurrency limits as rate limits.

The Prefect side of rate control: ``PrefectRateLimiter`` is a ``media_enrichment.ratecontrol.Limiter``
(the protocol ``TokenBucket`` also implements), kept here because the library imports no Prefect;
the gates, buckets and adaptive window it plugs into, and where every other piece of rate control
is, are described in ``media_enrichment.ratecontrol``.

With ``shared_rate_limits`` the flow calls ``ensure_rate_limits(settings)`` once and passes the
result to ``build_providers`` / ``build_bedrock_providers(settings, limiters=...)``; the providers'
gates then take each request (and Claude's estimated tokens) from Prefect's ``rate_limit``
instead of a local token bucket, so two runs (or two workers) on the same model share one
budget.

Each limit is a global concurrency limit with slot decay (``rate_limit`` refuses limits
without it): ``slot_decay_per_second`` is the per-minute quota / 60 and ``limit`` (the burst)
one second of it. The same limits can be made by hand::

    prefect gcl create "bedrock:us-east-1:us.anthropic.claude-haiku-4-5-20251001-v1:0:rpm" \\
        --limit 50 --slot-decay-per-second 50

Limits are acquired with ``strict=True``: Prefect's default skips a missing limit with only a
log line, which would silently lift the cap. Every acquisition is one call to the Prefect API
(serialised per limit by Prefect's client), so this suits quotas up to a few dozen requests a
second; a local bucket (the default) costs nothing.
"""

from __future__ import annotations

import logging
import math

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.types.names import BANNED_CHARACTERS

from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.ratecontrol import Limiter
from media_enrichment_prefect.tasks.aws import run_region

logger = logging.getLogger(__name__)

__all__ = ["PrefectRateLimiter", "RateLimitSpec", "ensure_rate_limits", "limit_name", "rate_limit_specs"]


class PrefectRateLimiter(Limiter):
    """A ``Limiter`` (``media_enrichment.ratecontrol``) backed by a Prefect global limit."""

    def __init__(
        self, name: str, *, strict: bool = True, max_occupy: int | None = None, timeout_seconds: float | None = None
    ):
        """Create the limiter (the limit itself is made by ``ensure_rate_limits`` or by hand).

        Args:
            name: the global concurrency limit's name; it must have slot decay.
            strict: raise if the limit does not exist (instead of skipping it silently).
            max_occupy: the limit's size: larger amounts are taken in pieces of at most this
                (Prefect refuses a request for more slots than the limit holds).
            timeout_seconds: give up waiting after this long (``TimeoutError``); None: wait.
        """
        if max_occupy is not None and max_occupy < 1:
            raise ValueError("max_occupy must be at least 1")
        self.name = name
        self.strict = strict
        self.max_occupy = max_occupy
        self.timeout_seconds = timeout_seconds

    def acquire(self, amount: int = 1) -> None:
        """Block until ``amount`` slots of the rate limit are granted.

        Args:
            amount: slots (requests or tokens) to take; 0 or less takes nothing.

        Raises:
            ConcurrencySlotAcquisitionError: the limit does not exist (``strict``) or the API
                refused the request.
        """
        remaining = int(amount)
        while remaining > 0:
            piece = min(remaining, self.max_occupy) if self.max_occupy else remaining
            rate_limit(self.name, occupy=piece, timeout_seconds=self.timeout_seconds, strict=self.strict)
            remaining -= piece

    def __repr__(self) -> str:
        return f"PrefectRateLimiter({self.name!r})"


class RateLimitSpec:
    """One limit to make: its key for ``build_gates``, name, size and decay."""

    __slots__ = ("key", "name", "limit", "slot_decay_per_second")

    def __init__(self, key: str, name: str, per_minute: int):
        self.key = key
        self.name = name
        self.slot_decay_per_second = per_minute / 60.0
        self.limit = max(1, math.ceil(self.slot_decay_per_second))  # one second of burst

    def __repr__(self) -> str:
        return f"RateLimitSpec({self.key!r}, {self.name!r}, limit={self.limit}, decay={self.slot_decay_per_second:g}/s)"


def limit_name(model_id: str, kind: str, region: str | None) -> str:
    """The global limit's name for one model's quota: ``bedrock:<region>:<model id>:<kind>``.

    Quotas are per account, region and model, so the name carries the region and model id
    (characters Prefect bans in names, e.g. the ``/`` of an ARN, become ``_``).
    """
    name = f"bedrock:{region or 'default-region'}:{model_id}:{kind}"
    for char in BANNED_CHARACTERS:
        name = name.replace(char, "_")
    return name


def rate_limit_specs(settings: Settings) -> list[RateLimitSpec]:
    """The limits the settings ask for (``describer_rpm``, ``describer_tpm``, ``embedder_rpm``).

    Their names carry the region the run's Bedrock client uses (``media_enrichment_prefect.tasks.aws.run_region``:
    ``MEDIA_ENRICH_AWS_REGION``, the AwsCredentials block's, ``AWS_REGION``, then boto3's chain),
    so runs in one region share a budget and runs in two do not.
    """
    if not any((settings.describer_rpm, settings.describer_tpm, settings.embedder_rpm)):
        return []
    from media_enrichment.providers.bedrock.models import resolve_describer_model

    region = run_region(settings)
    describer = resolve_describer_model(region, settings.describer_model_id)  # the id the run calls
    wanted = (
        ("describer-rpm", describer, "rpm", settings.describer_rpm),
        ("describer-tpm", describer, "tpm", settings.describer_tpm),
        ("embedder-rpm", settings.embedder_model_id, "rpm", settings.embedder_rpm),
    )
    return [RateLimitSpec(key, limit_name(model, kind, region), value) for key, model, kind, value in wanted if value]


def ensure_rate_limits(settings: Settings, *, update: bool = False) -> dict[str, PrefectRateLimiter]:
    """Make sure the Prefect global limits for the configured quotas exist; return limiters.

    A missing limit is created (active, with slot decay). An existing one is kept as it is
    (an operator may have tuned it with ``prefect gcl update``), with a warning if it differs
    from the settings, unless ``update`` is set. An existing limit without slot decay, or
    inactive, cannot enforce a rate and is refused unless ``update`` fixes it.

    Args:
        settings: the run's settings; only the rpm/tpm values that are set get a limit.
        update: overwrite existing limits with the settings' values.

    Returns:
        Limiters by key (``"describer-rpm"``, ``"describer-tpm"``, ``"embedder-rpm"``) for
        ``build_bedrock_providers(settings, limiters=...)``.

    Raises:
        ConfigError: an existing limit cannot serve as a rate limit.
    """
    limiters: dict[str, PrefectRateLimiter] = {}
    specs = rate_limit_specs(settings)
    if not specs:
        return limiters
    with get_client(sync_client=True) as client:
        for spec in specs:
            try:
                existing = client.read_global_concurrency_limit_by_name(spec.name)
            except ObjectNotFound:
                existing = None
            if existing is None:
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(
                            name=spec.name, limit=spec.limit, slot_decay_per_second=spec.slot_decay_per_second, active=True
                        )
                    )
                    logger.info("created global rate limit %s (%d, %g/s)", spec.name, spec.limit, spec.slot_decay_per_second)
                    size = spec.limit
                except ObjectAlreadyExists:  # another run made it meanwhile
                    existing = client.read_global_concurrency_limit_by_name(spec.name)
            if existing is not None:
                differs = existing.limit != spec.limit or not math.isclose(
                    existing.slot_decay_per_second or 0.0, spec.slot_decay_per_second
                )
                unusable = not existing.active or not existing.slot_decay_per_second
                if update and (differs or unusable):
                    client.update_global_concurrency_limit(
                        spec.name,
                        GlobalConcurrencyLimitUpdate(
                            limit=spec.limit, slot_decay_per_second=spec.slot_decay_per_second, active=True
                        ),
                    )
                    size = spec.limit
                elif unusable:
                    raise ConfigError(
                        f"global concurrency limit {spec.name!r} is inactive or has no slot decay, so it "
                        "cannot enforce a rate: fix it with 'prefect gcl update' or delete it"
                    )
                else:
                    if differs:
                        logger.warning(
                            "global rate limit %s exists with limit %s and decay %s/s; the settings ask for "
                            "%s and %g/s: keeping the existing one",
                            spec.name, existing.limit, existing.slot_decay_per_second, spec.limit,
                            spec.slot_decay_per_second,
                        )
                    size = existing.limit
            limiters[spec.key] = PrefectRateLimiter(spec.name, strict=True, max_occupy=max(1, size))
    return limiters
