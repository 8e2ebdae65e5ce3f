"""Versioned prompt templates for describers.

A template is plain text: the instructions sent with each image (the fields themselves are
fixed by the metadata schema and the tool the describer forces). The default is
``describe_v1.txt``, shipped as package data; users can pass a template of their own (retail,
travel, ...) with ``Settings.prompt_file``.

A template's version is the first 12 hex characters of the SHA-256 of its text (line endings
normalised to ``\\n``, surrounding whitespace stripped), so any edit to the wording yields a new
``prompt_version`` on the rows it writes and the affected images are described again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from media_enrichment.errors import ConfigError

DEFAULT_TEMPLATE = "describe_v1.txt"
MAX_TEMPLATE_CHARS = 20_000

__all__ = ["DEFAULT_TEMPLATE", "PromptTemplate", "load_prompt", "prompt_version"]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template: its text, its content version and a human-readable name."""

    text: str
    version: str  # 12 hex characters of sha256(text)
    name: str  # the file's stem, e.g. "describe_v1"


def prompt_version(text: str) -> str:
    """Version of a template's text.

    Args:
        text: the normalised template text.

    Returns:
        The first 12 hex characters of its SHA-256.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def load_prompt(path: Path | None = None) -> PromptTemplate:
    """Load a prompt template.

    Args:
        path: a UTF-8 text file of your own; ``None`` loads the packaged ``describe_v1.txt``.

    Returns:
        The template with its version (hash of the text) and name (the file's stem).

    Raises:
        ConfigError: the file is missing, unreadable, empty or too long.
    """
    if path is None:
        raw = resources.files(__name__).joinpath(DEFAULT_TEMPLATE).read_text(encoding="utf-8")
        name = Path(DEFAULT_TEMPLATE).stem
    else:
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"prompt file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"prompt file {path} cannot be read as UTF-8 text: {exc}") from None
        name = path.stem
    text = _normalise(raw)
    if not text:
        raise ConfigError(f"prompt template {name!r} is empty")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ConfigError(f"prompt template {name!r} is longer than {MAX_TEMPLATE_CHARS} characters")
    return PromptTemplate(text=text, version=prompt_version(text), name=name)
