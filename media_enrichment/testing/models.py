"""Which models the test server knows, and how it reads a model id.

A request names a model by its base id (``anthropic.claude-haiku-4-5-20251001-v1:0``), a
cross-region inference profile id (``us.`` / ``global.`` … before it) or an ARN of either;
``base_model`` strips the profile and ARN, ``is_profile`` tells the two kinds apart, and
``family`` picks the handler (Claude, Titan or Nova).
"""

from __future__ import annotations

__all__ = ["KNOWN_MODELS", "PROFILE_PREFIXES", "base_model", "family", "is_profile"]

KNOWN_MODELS = frozenset(
    {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-3-opus-20240229-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-opus-4-20250514-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-sonnet-4-6",
        "anthropic.claude-opus-4-6-v1",
        "amazon.titan-embed-image-v1",
        "amazon.nova-2-multimodal-embeddings-v1:0",
    }
)
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca", "in")


def family(model_id: str) -> str | None:
    """``anthropic``, ``titan`` or ``nova`` for a model the server can answer, else None."""
    if "anthropic." in model_id:
        return "anthropic"
    if "titan-embed-image" in model_id:
        return "titan"
    if "nova" in model_id and "multimodal-embeddings" in model_id:
        return "nova"
    return None


def base_model(model_id: str) -> str:
    """Strip an ARN and a cross-region inference profile prefix."""
    base = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    head, _, rest = base.partition(".")
    if rest and head in PROFILE_PREFIXES:
        base = rest
    return base


def is_profile(model_id: str) -> bool:
    """Whether an id names an inference profile (a geography prefix, or a profile ARN)."""
    if model_id.startswith("arn:"):
        return ":inference-profile/" in model_id or ":application-inference-profile/" in model_id
    head, _, rest = model_id.partition(".")
    return bool(rest) and head in PROFILE_PREFIXES
