"""The checks of ``config.Settings`` beyond each field's type and bounds.

Across fields: the vector length against the embedder's sizes, rpm/tpm limits on Dask, and what
batch inference needs; of one field: the ``allowed_roots`` text (a JSON list, or roots separated
by commas or ``os.pathsep``: ``split_roots``) and form, the batch S3 URI and the dataset root.
``Settings`` calls them from its validators; a check that finds one field wrong raises
``FieldValueError`` naming it, so that the message can name where the value came from.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

from media_enrichment.errors import ConfigError

if TYPE_CHECKING:
    from media_enrichment.config import Settings

__all__ = ["FieldValueError", "split_roots"]


class FieldValueError(ValueError):
    """A check across fields found one field's value wrong: the error names that field, so that
    the message can name where the value came from (an option, a parameter or a variable)."""

    def __init__(self, field: str, message: str, value: Any):
        super().__init__(message)
        self.field = field
        self.value = value


# -- across fields -------------------------------------------------------------------------------


def embedding_dim_fits_the_embedder(settings: Settings) -> None:
    # Each embedder class defines the sizes it makes (``dims``). An unknown Bedrock model id
    # is left to ``build_bedrock_providers``, which refuses it with a ConfigError before any call.
    from media_enrichment.providers import embedder_class

    try:
        embedder = embedder_class(settings.provider, settings.embedder_model_id)
    except ConfigError:
        return
    if isinstance(settings.embedding_dim, bool) or settings.embedding_dim not in embedder.dims:
        which = "the local embedder" if settings.provider == "local" else settings.embedder_model_id
        *first, last = [str(d) for d in embedder.dims]
        sizes = f"{', '.join(first)} or {last}" if first else last
        raise FieldValueError("embedding_dim", f"must be {sizes} for {which}", settings.embedding_dim)


def limits_shared_on_dask(settings: Settings) -> None:
    # Token buckets live in one process: N Dask workers would each allow the whole rate.
    limited = any(v is not None for v in (settings.describer_rpm, settings.describer_tpm, settings.embedder_rpm))
    if settings.task_runner == "dask" and settings.provider == "bedrock" and limited and not settings.shared_rate_limits:
        raise ValueError(
            "rpm/tpm limits on Dask must be shared between worker processes: set "
            "MEDIA_ENRICH_SHARED_RATE_LIMITS=true (Prefect global concurrency limits)"
        )


def batch_can_run(settings: Settings) -> None:
    # Checked with the settings, so a run that cannot batch stops before anything is written.
    # 'auto' is batch where it can be: on the local provider, or without a role or an S3
    # location, it is on demand (the driver logs why), so a deployment may default to it.
    if settings.invocation != "batch":
        return
    if settings.provider == "local":
        raise FieldValueError(
            "invocation", "batch inference needs the bedrock provider (the local provider has no batch jobs)",
            settings.invocation,
        )
    if not settings.batch_role_arn:
        raise FieldValueError(
            "batch_role_arn",
            f"invocation {settings.invocation!r} needs the IAM service role Bedrock runs batch jobs as: set "
            "MEDIA_ENRICH_BATCH_ROLE_ARN",
            None,
        )
    if settings.batch_s3_uri is None and not settings.dataset.startswith("s3://"):
        raise FieldValueError(
            "batch_s3_uri",
            f"invocation {settings.invocation!r} with a local dataset needs an S3 location for the batch jobs' input "
            "and output: set MEDIA_ENRICH_BATCH_S3_URI=s3://bucket/prefix",
            None,
        )
    if settings.batch_max_records_per_job < settings.batch_min_records:
        raise FieldValueError(
            "batch_max_records_per_job", "is below batch_min_records: no batch job could be formed",
            settings.batch_max_records_per_job,
        )
    if settings.batch_max_bytes_per_file > settings.batch_max_bytes_per_job:
        raise FieldValueError(
            "batch_max_bytes_per_file", "exceeds batch_max_bytes_per_job", settings.batch_max_bytes_per_file
        )


# -- one field -----------------------------------------------------------------------------------


def batch_uri_is_s3(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value.startswith("s3://") or not value[len("s3://") :].split("/", 1)[0]:
        raise ValueError("must be an s3://bucket/prefix URI")
    return value.rstrip("/")


def roots_from_text(value: Any) -> Any:
    # The variable (and a single string given for the run): a JSON list, or roots separated
    # by commas or os.pathsep (':' here, but not the one of 's3://').
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("must be a JSON list of strings, or roots separated by ',' or os.pathsep") from None
        return split_roots(text)
    return value


def roots_well_formed(value: tuple[str, ...]) -> tuple[str, ...]:
    roots: list[str] = []
    for root in value:
        root = root.strip()
        if not root:
            continue
        if len(root) > 4096:
            raise ValueError("a root longer than 4096 characters")
        if "\x00" in root:
            raise ValueError("a root with a NUL character")
        if "://" in root and not (root.startswith("s3://") and root[len("s3://") :].split("/", 1)[0]):
            raise ValueError(f"{root!r} is neither a local folder nor s3://bucket[/prefix]")
        roots.append(root)
    return tuple(dict.fromkeys(roots))


def dataset_not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value.rstrip("/")


def split_roots(text: str) -> list[str]:
    """Roots written in one string: separated by commas or by ``os.pathsep`` (the ':' of
    ``s3://`` excepted), blanks dropped: ``"/data/a:s3://b/p,/data/c"`` -> three roots."""
    separators = "," if os.pathsep == "," else "," + re.escape(os.pathsep)
    pattern = f"[{separators}]" if os.pathsep != ":" else r",|:(?!//)"
    return [part.strip() for part in re.split(pattern, text) if part.strip()]
