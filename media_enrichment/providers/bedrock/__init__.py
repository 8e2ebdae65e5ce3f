"""Amazon Bedrock providers: Claude describes images; Titan G1 or Nova Multimodal Embeddings embed them.

This module wires them (``build_bedrock_providers``: one session, one client, a gate per model)
and picks the embedder a model id names (``bedrock_embedder_class``). Each concern has one module:

- ``describer``: ``BedrockDescriber``, its request bodies and corrective turns (why InvokeModel,
  how retries are layered).
- ``answers``: the forced metadata tool, and parsing and repair of Claude's answers.
- ``embedders``: the base every Bedrock embedder shares, and Titan Multimodal Embeddings G1.
- ``nova``: Amazon Nova Multimodal Embeddings.
- ``models``: the default Claude model, inference-profile geography
  (``resolve_describer_model``), model lifecycle look-ups and the LEGACY warning.
- ``errors``: botocore's exceptions into the library's hierarchy (``translate_error``), the
  one-line fixes for refusals, the access-check wrapper.
- ``invoke``: one InvokeModel call through the model's gate, errors translated, JSON decoded.
- ``hooks``: the botocore ``response-received`` hook that reports each HTTP attempt to the
  gate of the call in flight on its thread.

Rate control itself is ``media_enrichment.ratecontrol``; token estimates are
``media_enrichment.tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from media_enrichment.aws import bedrock_runtime_client, make_session
from media_enrichment.config import Settings
from media_enrichment.errors import ConfigError
from media_enrichment.prompts import load_prompt
from media_enrichment.providers.bedrock.describer import BedrockDescriber
from media_enrichment.providers.bedrock.embedders import BedrockEmbedder, BedrockEmbedderBase
from media_enrichment.providers.bedrock.invoke import region_of
from media_enrichment.providers.bedrock.models import control_client_for, resolve_describer_model
from media_enrichment.providers.bedrock.nova import NovaEmbedder
from media_enrichment.ratecontrol import Limiter, build_gates

__all__ = ["EMBEDDERS", "bedrock_embedder_class", "build_bedrock_providers"]

#: The Bedrock embedders, each with the model ids it takes (``accepts``) and its sizes (``dims``).
EMBEDDERS: tuple[type[BedrockEmbedderBase], ...] = (BedrockEmbedder, NovaEmbedder)


def bedrock_embedder_class(model_id: str) -> type[BedrockEmbedderBase]:
    """The Bedrock embedder for a model id.

    Args:
        model_id: ``amazon.titan-embed-image-v1`` (Titan Multimodal Embeddings G1) or an Amazon
            Nova Multimodal Embeddings id (``amazon.nova-2-multimodal-embeddings-v1:0``), bare,
            as an inference profile id (``us.amazon...``) or as an ARN.

    Returns:
        ``BedrockEmbedder`` (Titan) or ``NovaEmbedder``.

    Raises:
        ConfigError: the id names neither model.
    """
    for embedder in EMBEDDERS:
        if embedder.accepts(model_id):
            return embedder
    choices = " or ".join(f"{embedder.default_model} ({embedder.model_name})" for embedder in EMBEDDERS)
    raise ConfigError(
        f"embedder model id {model_id!r} is not a multimodal embeddings model this library can use: set "
        f"MEDIA_ENRICH_EMBEDDER_MODEL_ID to {choices}"
    )


def build_bedrock_providers(
    settings: Settings,
    *,
    limiters: Mapping[str, Limiter] | None = None,
    max_in_flight: int | None = None,
    session: Any = None,
) -> tuple[BedrockDescriber, BedrockEmbedderBase]:
    """Wire the Bedrock describer and embedder: one session, one client shared by both.

    The embedder is chosen by ``embedder_model_id`` (``bedrock_embedder_class``). Each model
    gets a ``ModelGate`` from ``ratecontrol.build_gates``: requests and tokens per minute
    (``describer_rpm``, ``describer_tpm``, ``embedder_rpm``; local token buckets unless
    ``limiters`` supplies shared ones) and, with ``adaptive_concurrency``, calls in flight that
    back off on throttling. With none of those set, the gates only count.

    Args:
        settings: the run's settings (models, prompt file, max tokens, AWS, retry and rate options).
        limiters: rate limiters by name (``"describer-rpm"``, ``"describer-tpm"``,
            ``"embedder-rpm"``), e.g. ``media_enrichment_prefect.tasks.limits.ensure_rate_limits(settings)``,
            used instead of local buckets.
        max_in_flight: ceiling of calls in flight per model (default ``settings.concurrency``).
        session: a boto3 session to use (e.g. from a prefect-aws ``AwsCredentials`` block);
            default: one from the standard credential chain, ``aws_profile`` and ``aws_region``.

    Returns:
        ``(describer, embedder)``; their gates are ``describer.gate`` and ``embedder.gate``.

    Raises:
        ConfigError: unknown profile, no region, bad prompt file or model ids.
    """
    if session is None:
        session = make_session(profile=settings.aws_profile, region=settings.aws_region)
    client = bedrock_runtime_client(session, settings=settings)
    prompt = load_prompt(settings.prompt_file)
    describer_gate, embedder_gate = build_gates(settings, limiters=limiters, max_in_flight=max_in_flight)
    describer = BedrockDescriber(
        client,
        # The configured id verbatim, or Claude Haiku 4.5 through the profile of the client's region.
        model_id=resolve_describer_model(region_of(client), settings.describer_model_id),
        prompt=prompt,
        max_tokens=settings.max_output_tokens,
        gate=describer_gate,
        control_client=control_client_for(session, client, settings),
    )
    embedder = bedrock_embedder_class(settings.embedder_model_id)(
        client, model_id=settings.embedder_model_id, dim=settings.embedding_dim, gate=embedder_gate
    )
    return describer, embedder
