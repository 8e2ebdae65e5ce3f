"""Claude on the test server: which ids answer, the Messages body, and the answer.

Model rules, as the service applies them: retired versions (``RETIRED_MODELS``) answer 404
"end of its life"; Claude 4.x base ids are served on demand only through an inference profile
(400 otherwise, ``require_profile``); Claude Opus 4.1 and every 4.5+ model refuse
``temperature`` together with ``top_p``.

``handle_claude`` validates an Anthropic Messages body the way Bedrock does (API version,
``max_tokens``, tools and ``tool_choice``, alternating roles, tool results after tool uses,
images: media type against the bytes, 5 MB of base64, 8000 px a side, 20 per request) and
answers with the image's metadata as the forced tool's input (or as text without tools), with
usage in the body and headers. Answer faults replace it with prose around JSON, a code fence, a
trailing comma, broken JSON, a cut answer (``stop_reason`` ``max_tokens``), a refusal, or a
hostile answer (``hostile_answer``: 100 KB texts, 10,000 keywords, escape sequences, control
characters and markup, extra keys, nested junk, sometimes another tool's name).

The modules: ``rules`` (model ids: retired, profiles, sampling), ``request`` (validating the
body), ``answer`` (``handle_claude``: the answer, its faults and usage) and ``hostile`` (the
hostile answer). This package exports what the rest of the test server uses.
"""

from media_enrichment.testing.claude.answer import CLAUDE_SCALE_EDGE, CLAUDE_SCALE_PIXELS, handle_claude
from media_enrichment.testing.claude.hostile import (
    HOSTILE_DEPTH,
    HOSTILE_JUNK,
    HOSTILE_KEYWORDS,
    HOSTILE_TEXT_CHARS,
    hostile_answer,
)
from media_enrichment.testing.claude.request import (
    ANTHROPIC_VERSION,
    CLAUDE_MAX_BASE64,
    CLAUDE_MAX_IMAGES,
    CLAUDE_MAX_SIDE,
    CLAUDE_MEDIA_TYPES,
)
from media_enrichment.testing.claude.rules import (
    END_OF_LIFE_MESSAGE,
    PROFILE_REQUIRED_MESSAGE,
    RETIRED_MODELS,
    SAMPLING_MESSAGE,
    claude_version,
    require_profile,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "CLAUDE_MAX_BASE64",
    "CLAUDE_MAX_IMAGES",
    "CLAUDE_MAX_SIDE",
    "CLAUDE_MEDIA_TYPES",
    "CLAUDE_SCALE_EDGE",
    "CLAUDE_SCALE_PIXELS",
    "END_OF_LIFE_MESSAGE",
    "HOSTILE_DEPTH",
    "HOSTILE_JUNK",
    "HOSTILE_KEYWORDS",
    "HOSTILE_TEXT_CHARS",
    "PROFILE_REQUIRED_MESSAGE",
    "RETIRED_MODELS",
    "SAMPLING_MESSAGE",
    "claude_version",
    "handle_claude",
    "hostile_answer",
    "require_profile",
]
