"""The metadata model written by describers and the Arrow schemas of the Delta tables.

Model answers are data. Whatever a describer returns, ``ImageMetadata`` holds bounded, clean
values:

- **Control characters are removed**: escape sequences as a whole (CSI such as ``ESC[31m`` or
  ``ESC[2J``, OSC such as a terminal title or hyperlink, DCS/SOS/PM/APC strings, two-character
  escapes), then every remaining C0 control, DEL and C1 control, lone surrogates (which cannot
  be stored as UTF-8) and the bidirectional embedding, override and isolate characters (which
  reorder what a terminal shows). ``clean_text`` does this.
- **Line breaks**: ``description`` keeps its line breaks (``\\n``; CR LF, CR, U+2028 and U+2029
  become ``\\n``, at most one blank line in a row); ``title``, keywords and tags are one line
  (breaks become spaces); an OCR item holding several lines becomes one item per line.
  Tabs become spaces and runs of spaces collapse to one.
- **Caps**: ``MAX_TITLE`` and ``MAX_DESCRIPTION`` characters; ``MAX_ITEMS`` keywords and tags
  of ``MAX_ITEM_CHARS`` each; ``MAX_OCR_ITEMS`` OCR lines of ``MAX_OCR_CHARS`` each. At most
  ``MAX_SCAN_CHARS`` of a text and ``MAX_SCAN_ITEMS`` items of a list are looked at, so an
  answer of any size costs bounded work.
- **Shapes**: unknown keys are ignored. A list field takes a list (or a string, split on commas,
  semicolons and newlines for keywords and tags); nested lists in it are flattened, numbers
  become their decimal text, and objects, booleans and nulls are dropped: nothing is ever
  stored as a Python ``repr``. A title or description that is a list of strings is joined; any
  other non-string value is invalid (the describer then asks again, see
  ``providers.bedrock.answers``).
- Markup (``<script>``) is text like any other: it is kept, and whoever renders the dataset as
  HTML escapes it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TITLE = 200
MAX_DESCRIPTION = 2_000
MAX_ITEMS = 30
MAX_ITEM_CHARS = 80
MAX_OCR_ITEMS = 50
MAX_OCR_CHARS = 500
#: Characters of one text value looked at (the rest of a longer one is ignored before cleaning).
MAX_SCAN_CHARS = 100_000
#: Items of one list value looked at (nested items included).
MAX_SCAN_ITEMS = 1_000
_MAX_DEPTH = 8  # nested lists flattened at most this deep

_SPLIT = re.compile(r"[,;\n]")
# Escape sequences, removed as a whole: CSI (ESC [ or the C1 CSI, parameters, intermediates, a
# final byte), OSC/DCS/SOS/PM/APC strings (ended by BEL or ST, or unterminated to the end), then
# any other two-character escape (ESC and one character).
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x7e]?",
)
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# C0 controls except \t and \n, DEL, C1 controls, lone surrogates, bidi embeddings/overrides/isolates.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(value: str, *, newlines: bool = False, limit: int | None = None) -> str:
    """A model's text made safe to store and print.

    Args:
        value: any text.
        newlines: keep line breaks (normalised to ``\\n``, at most one blank line in a row);
            otherwise they become spaces.
        limit: cut the result to this many characters (then trailing spaces are dropped).

    Returns:
        The text without escape sequences and control characters, spaces collapsed, trimmed,
        in Unicode NFC (so duplicates compare equal).
    """
    text = value[:MAX_SCAN_CHARS]
    if text.isascii() and text.isprintable() and "  " not in text and text.strip() == text:
        # Most of a model's answer: printable ASCII (no control, escape or line break), single
        # spaces, trimmed, NFC already; nothing below would change it but the limit.
        return text[:limit].rstrip() if limit is not None and len(text) > limit else text
    text = _ESCAPES.sub("", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROLS.sub("", text)
    if newlines:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    else:
        text = _SPACES.sub(" ", text.replace("\n", " ")).strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip()
    return text


def clean_line(value: Any, limit: int | None = None) -> str:
    """``clean_text`` on one line, for anything printed to a terminal (``str`` of a non-string)."""
    return clean_text(value if isinstance(value, str) else str(value), limit=limit)


def _scalar_text(item: Any) -> str | None:
    """The text of one list item: strings as they are, finite numbers as decimals, else None."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        return str(item) if abs(item) < 10**30 else None
    if isinstance(item, float):
        return repr(item) if math.isfinite(item) else None
    return None


def _flatten(value: list | tuple) -> list[str]:
    """The texts of a list, nested lists flattened (iteratively, bounded in depth and count)."""
    out: list[str] = []
    seen = 0
    stack: list[tuple[Any, int]] = [(iter(value), 0)]
    while stack and seen < MAX_SCAN_ITEMS:
        items, depth = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            continue
        seen += 1
        if isinstance(item, (list, tuple)):
            if depth + 1 < _MAX_DEPTH:
                stack.append((iter(item), depth + 1))
            continue
        text = _scalar_text(item)
        if text is not None:
            out.append(text)
    return out


_END = object()


def _as_list(value: Any, *, split: bool) -> list[str]:
    """Accept a list or a comma/semicolon/newline separated string (as models often return)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = _SPLIT.split(value[:MAX_SCAN_CHARS]) if split else [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of strings, got {type(value).__name__}")
    return _flatten(value)


def _clean(items: list[str], *, lower: bool, max_items: int, max_chars: int, lines: bool = False) -> list[str]:
    """Clean each item, drop empties and case-insensitive duplicates, cap lengths and count.

    With ``lines``, an item holding line breaks becomes one item per line.
    """
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        pieces = clean_text(item, newlines=True).split("\n") if lines else [clean_text(item)]
        for piece in pieces:
            text = piece.strip() if lines else piece.strip(" \"'`.#")
            if lower:
                text = text.lower()
            text = text[:max_chars].rstrip()
            key = text.casefold()
            if text and key not in seen:
                seen.add(key)
                out.append(text)
            if len(out) == max_items:
                return out
    return out


def _one_text(value: Any) -> str:
    """A title or description: a string, or a list of strings joined (nothing else)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value[:MAX_SCAN_ITEMS]):
        return " ".join(value[:MAX_SCAN_ITEMS])
    raise ValueError("must be a string")


class ImageMetadata(BaseModel):
    """What a describer says about one image: bounded, clean values (see the module's docstring)."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(..., min_length=1, description="A short, specific title (one line).")
    description: str = Field(..., min_length=1, description="One to three sentences (may hold line breaks).")
    keywords: list[str] = Field(default_factory=list, description="Search keywords.")
    tags: list[str] = Field(default_factory=list, description="Lower-case category tags.")
    ocr_texts: list[str] = Field(default_factory=list, description="Text visible in the image, one line each.")

    @field_validator("title", "description", mode="before")
    @classmethod
    def _text(cls, value: Any, info) -> str:
        text = _one_text(value)
        if info.field_name == "title":
            return clean_text(text, limit=MAX_TITLE)
        return clean_text(text, newlines=True, limit=MAX_DESCRIPTION)

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
        # Visible text may itself contain commas: a string is one text (one item per line of
        # it), not a list to split on commas. It is kept verbatim, control characters aside.
        return _clean(
            _as_list(value, split=False), lower=False, max_items=MAX_OCR_ITEMS, max_chars=MAX_OCR_CHARS, lines=True
        )


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
