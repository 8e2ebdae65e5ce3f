"""The metadata model written by describers and the Arrow schemas of the Delta tables."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TITLE = 200
MAX_DESCRIPTION = 2_000
MAX_ITEMS = 30
MAX_ITEM_CHARS = 80
MAX_OCR_ITEMS = 50
MAX_OCR_CHARS = 500

_SPLIT = re.compile(r"[,;\n]")


def _as_list(value: Any, *, split: bool) -> list[str]:
    """Accept a list or a comma/semicolon/newline separated string (as models often return)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = _SPLIT.split(value) if split else [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of strings, got {type(value).__name__}")
    return [str(item) for item in value if item is not None]


def _clean(items: list[str], *, lower: bool, max_items: int, max_chars: int) -> list[str]:
    """Trim, collapse spaces, drop empties and case-insensitive duplicates, cap lengths."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        text = " ".join(item.split()).strip(" \"'`.#")
        if lower:
            text = text.lower()
        text = text[:max_chars]
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            out.append(text)
        if len(out) == max_items:
            break
    return out


class ImageMetadata(BaseModel):
    """What a describer says about one image. Lists are normalised on construction."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(..., min_length=1, description="A short, specific title.")
    description: str = Field(..., min_length=1, description="One to three sentences.")
    keywords: list[str] = Field(default_factory=list, description="Search keywords.")
    tags: list[str] = Field(default_factory=list, description="Lower-case category tags.")
    ocr_texts: list[str] = Field(default_factory=list, description="Text visible in the image.")

    @field_validator("title", "description", mode="before")
    @classmethod
    def _text(cls, value: Any, info) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        limit = MAX_TITLE if info.field_name == "title" else MAX_DESCRIPTION
        return " ".join(value.split())[:limit]

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> list[str]:
        return _clean(_as_list(value, split=True), lower=False, max_items=MAX_ITEMS, max_chars=MAX_ITEM_CHARS)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        return _clean(_as_list(value, split=True), lower=True, max_items=MAX_ITEMS, max_chars=MAX_ITEM_CHARS)

    @field_validator("ocr_texts", mode="before")
    @classmethod
    def _ocr(cls, value: Any) -> list[str]:
        # Visible text may itself contain commas: a string is one text, not a list to split.
        return _clean(_as_list(value, split=False), lower=False, max_items=MAX_OCR_ITEMS, max_chars=MAX_OCR_CHARS)


ASSET_KEY = "image_id"

ASSETS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("media_type", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("size_bytes", pa.int64()),
        pa.field("batch", pa.string()),
        pa.field("attributes", pa.string()),  # the manifest's extra columns, as a JSON object
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("keywords", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("ocr_texts", pa.list_(pa.string())),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("embedding_dim", pa.int32()),
        pa.field("enrichment_model", pa.string()),
        pa.field("embedding_model", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("run_id", pa.string()),
        pa.field("enriched_at", pa.timestamp("us", tz="UTC")),
    ]
)

FAILURES_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string()),
        pa.field("content_sha256", pa.string()),  # of the file that failed (null if unreadable)
        pa.field("stage", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("permanent", pa.bool_()),  # retrying the same bytes cannot help (undecodable, rejected)
        pa.field("run_id", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
    ]
)
