"""Token estimates: the one place an image's size or a text's length becomes a token count.

Two callers use the same numbers: the describer's token budget (each Claude call takes its
estimated input tokens from the ``describer-tpm`` limiter before it is sent, see
``media_enrichment.ratecontrol``) and the cost estimate of a catalogue
(``media_enrichment.cost.estimate_catalog``).

The constants
-------------
- ``PIXELS_PER_TOKEN = 750``: Claude bills an image at about ``width * height / 750`` input
  tokens, measured on the image the service processes, which it first scales down to at most
  1568 px on the long edge and about 1.15 megapixels (Anthropic's vision documentation).
  ``image_tokens`` applies that scaling (``CLAUDE_LIMITS``) before dividing; for an image
  already prepared within those limits it is a no-op, so a budget estimate and a cost estimate
  of the same image agree. The largest image comes to about 1,600 tokens.
- ``CHARS_PER_TOKEN = 3.5``: Anthropic's own rule of thumb for Claude is about 3.5 English
  characters a token; JSON (the tool schema, corrective turns) is denser, not sparser. The
  other common figure, 4 (a GPT rule of thumb, which the provider used), counts about 12 % fewer
  tokens. Both callers want an estimate that errs high: a token-per-minute budget that
  undercounts lets through requests the service then throttles, and a cost estimate that
  undercounts is the surprising kind.

Only estimates: the billed figures are the ``usage`` the service returns.
"""

from __future__ import annotations

import math

from media_enrichment.images import CLAUDE_LIMITS, ImageLimits, target_size

__all__ = ["CHARS_PER_TOKEN", "PIXELS_PER_TOKEN", "image_tokens", "request_tokens", "text_tokens"]

#: Pixels per input token of an image, once scaled to the model's limits.
PIXELS_PER_TOKEN = 750
#: Characters per token of English text and JSON.
CHARS_PER_TOKEN = 3.5


def image_tokens(width: int, height: int, limits: ImageLimits = CLAUDE_LIMITS) -> int:
    """Input tokens of one image, after the scaling the service applies.

    Args:
        width: the image's width in pixels (as stored or as sent).
        height: its height.
        limits: the size the service scales down to (default Claude's: 1568 px long edge,
            about 1.15 megapixels).

    Returns:
        ``ceil(w * h / 750)`` of the scaled size, e.g. 40 for 200x150.
    """
    w, h = target_size(width, height, limits)
    return math.ceil(w * h / PIXELS_PER_TOKEN)


def text_tokens(text: str | int) -> int:
    """Tokens of a text, about one per 3.5 characters.

    Args:
        text: the text, or its length in characters.

    Returns:
        ``ceil(chars / 3.5)``, e.g. 2 for ``"hello"``; 0 for an empty text.
    """
    chars = text if isinstance(text, int) else len(text)
    return math.ceil(max(0, chars) / CHARS_PER_TOKEN)


def request_tokens(width: int, height: int, text: str | int) -> int:
    """Input tokens of a request with one image and some text (prompt, tool schema, turns).

    Args:
        width: the image's width.
        height: its height.
        text: the request's text, or its length in characters.

    Returns:
        ``image_tokens(width, height) + text_tokens(text)``, at least 1.
    """
    return max(1, image_tokens(width, height) + text_tokens(text))
