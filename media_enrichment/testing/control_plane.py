"""The control plane on the test server: ``GetFoundationModel`` and model lifecycles.

``GET /foundation-models/{id}`` (the ``bedrock`` client, ``AWS_ENDPOINT_URL_BEDROCK``) answers a
known, not retired base model id with its details the way Bedrock does: provider, modalities,
``inferenceTypesSupported`` (``INFERENCE_PROFILE`` for Claude 4.x, ``ON_DEMAND`` otherwise) and
``modelLifecycle``, ``ACTIVE`` unless the server marked it ``LEGACY`` with the dates
``lifecycle_fields`` makes. Profile ids, unknown and retired models get 404.

``ControlPlaneHandler`` is the server's HTTP handler: it serves the batch inference operations
(``batch.route``: ``/model-invocation-job``, ``/model-invocation-jobs``, on botocore's paths)
and passes every other request to ``wire.RequestHandler``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Set
from typing import Any
from urllib.parse import urlsplit

from media_enrichment.testing import batch
from media_enrichment.testing.claude import claude_version
from media_enrichment.testing.errors import ServiceError, validation
from media_enrichment.testing.models import family
from media_enrichment.testing.wire import RequestHandler

__all__ = ["ControlPlaneHandler", "foundation_model", "lifecycle_fields"]


class ControlPlaneHandler(RequestHandler):
    """``wire.RequestHandler`` plus the batch inference routes of the ``bedrock`` control plane."""

    def do_GET(self) -> None:
        if not self._batch("GET"):
            super().do_GET()

    def do_POST(self) -> None:
        if self.app.stopping:  # stopped: drop kept-alive connections without answering
            self.close_connection = True
            return
        if not self._batch("POST"):
            super().do_POST()

    def _batch(self, method: str) -> bool:
        """Answer a batch operation; whether the path was one."""
        url = urlsplit(self.path)
        if not url.path.startswith("/model-invocation-job"):
            return False

        def read_body() -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > self.app.max_body_bytes:
                self.close_connection = True
                raise validation(f"Request body of {length} bytes exceeds the server's limit")
            return self.rfile.read(length) if length else b""

        try:
            answer = batch.route(self.app, method, url.path, url.query, read_body)
        except ServiceError as error:
            self._send_error(error)
            return True
        if answer is None:
            return False
        self._send(200, answer)
        return True


def lifecycle_fields(
    end_of_life: str, *, legacy_since: str | None = None, extended_access_from: str | None = None
) -> dict[str, str]:
    """The ``modelLifecycle`` dates of a ``LEGACY`` model, as Bedrock writes them.

    Args:
        end_of_life: the end-of-life date, ``YYYY-MM-DD``.
        legacy_since: when it became legacy (default: 180 days before the end of life).
        extended_access_from: start of public extended access (higher prices), if any.

    Returns:
        ``legacyTime``, ``endOfLifeTime`` and, with ``extended_access_from``,
        ``publicExtendedAccessTime``, each an ISO timestamp at midnight UTC.
    """
    eol = datetime.date.fromisoformat(end_of_life)
    since = datetime.date.fromisoformat(legacy_since) if legacy_since else eol - datetime.timedelta(days=180)
    fields = {"legacyTime": f"{since.isoformat()}T00:00:00Z", "endOfLifeTime": f"{eol.isoformat()}T00:00:00Z"}
    if extended_access_from:
        extended = datetime.date.fromisoformat(extended_access_from)
        fields["publicExtendedAccessTime"] = f"{extended.isoformat()}T00:00:00Z"
    return fields


def foundation_model(
    model_identifier: str,
    *,
    models: Set[str],
    retired_models: Set[str],
    legacy_models: Mapping[str, Mapping[str, str]],
    region: str,
) -> dict[str, Any]:
    """``GetFoundationModel``'s answer for a model id or foundation-model ARN.

    Args:
        model_identifier: as the caller sent it.
        models: the base ids the server knows.
        retired_models: base ids past their end of life.
        legacy_models: base id -> its ``lifecycle_fields``.
        region: the region named in the model's ARN.

    Raises:
        ServiceError: 404 for an unknown or retired model and for an inference profile id (not
            a foundation model).
    """
    model_id = model_identifier.rsplit("/", 1)[-1] if model_identifier.startswith("arn:") else model_identifier
    kind = family(model_id)
    if model_id not in models or kind is None or model_id in retired_models:
        raise ServiceError(404, "ResourceNotFoundException", f"The model {model_identifier} was not found.", "not_found")
    claude = kind == "anthropic"
    lifecycle: dict[str, str] = {"status": "ACTIVE"}
    if model_id in legacy_models:
        lifecycle = {"status": "LEGACY", **legacy_models[model_id]}
    return {
        "modelDetails": {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id.split(".", 1)[-1],
            "providerName": "Anthropic" if claude else "Amazon",
            "inputModalities": ["TEXT", "IMAGE"],
            "outputModalities": ["TEXT"] if claude else ["EMBEDDING"],
            "responseStreamingSupported": claude,
            "customizationsSupported": [],
            "inferenceTypesSupported": (
                ["INFERENCE_PROFILE"] if claude and claude_version(model_id) is not None else ["ON_DEMAND"]
            ),
            "modelLifecycle": lifecycle,
        }
    }
