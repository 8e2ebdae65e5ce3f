"""Claude model rules on the test server: retired versions, inference profiles, sampling parameters.

Retired versions (``RETIRED_MODELS``) answer 404 "end of its life"; Claude 4.x base ids are
served on demand only through an inference profile (400 otherwise, ``require_profile``); Claude
Opus 4.1 and every 4.5+ model refuse ``temperature`` together with ``top_p``.
"""

from __future__ import annotations

import re

from media_enrichment.testing.errors import validation
from media_enrichment.testing.models import base_model, is_profile

__all__ = [
    "END_OF_LIFE_MESSAGE",
    "PROFILE_REQUIRED_MESSAGE",
    "RETIRED_MODELS",
    "SAMPLING_MESSAGE",
    "claude_version",
    "require_profile",
]

#: Claude versions that have reached end of life on Bedrock: every call answers 404
#: ResourceNotFoundException (Claude 3 Haiku on 2026-09-10 in most regions, 3.5 Haiku on
#: 2026-06-19, 3.7 Sonnet on 2026-04-28; Claude 3 Sonnet and both 3.5 Sonnets before).
RETIRED_MODELS = frozenset(
    {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
    }
)
END_OF_LIFE_MESSAGE = (
    "This model version has reached the end of its life. Please refer to the AWS documentation for more details."
)
#: The service's wording, typographic apostrophe included.
PROFILE_REQUIRED_MESSAGE = (
    "Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your request with "
    "the ID or ARN of an inference profile that contains this model."
)
SAMPLING_MESSAGE = "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
#: Claude 4.x ids name the family first (``claude-haiku-4-5``); they are served on demand only
#: through an inference profile.
_CLAUDE_4 = re.compile(r"^anthropic\.claude-(?:haiku|sonnet|opus)-(?P<major>\d+)(?:-(?P<minor>\d)(?!\d))?")


def claude_version(base: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Claude 4+ base id (``claude-haiku-4-5`` -> (4, 5)), else None."""
    match = _CLAUDE_4.match(base)
    if not match:
        return None
    return int(match.group("major")), int(match.group("minor") or 0)


def require_profile(model_id: str) -> None:
    """Refuse a Claude 4.x base id called on demand (it needs an inference profile).

    Raises:
        ServiceError: 400 ``ValidationException``, counted as ``profile_required``.
    """
    if claude_version(base_model(model_id)) is not None and not is_profile(model_id):
        raise validation(PROFILE_REQUIRED_MESSAGE.format(model_id=model_id)).with_outcome("profile_required")


def _refuses_temperature_with_top_p(base: str) -> bool:
    """Claude Opus 4.1 and every 4.5+ model refuse ``temperature`` and ``top_p`` together."""
    version = claude_version(base)
    return version is not None and (version >= (4, 5) or base.startswith("anthropic.claude-opus-4-1"))
