"""Claude answers on the test server: ``handle_claude`` and the content it writes.

A valid request (``claude.request``) is answered with the image's metadata as the forced tool's
input (or as text without tools), with usage in the body and headers (image tokens as Claude
counts them, after scaling). Answer faults replace it with prose around JSON, a code fence, a
trailing comma, broken JSON, a cut answer (``stop_reason`` ``max_tokens``), a refusal, or a
hostile answer (``claude.hostile``).
"""

from __future__ import annotations

import json
import math
import random
import uuid
from typing import TYPE_CHECKING, Any

from media_enrichment.testing.claude.hostile import hostile_answer
from media_enrichment.testing.claude.request import _check_parameters, _read_messages
from media_enrichment.testing.content import metadata_for, text_tokens
from media_enrichment.testing.faults import ANSWER_OUTCOMES
from media_enrichment.testing.models import base_model

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

__all__ = ["CLAUDE_SCALE_EDGE", "CLAUDE_SCALE_PIXELS", "handle_claude"]

CLAUDE_SCALE_EDGE = 1568
CLAUDE_SCALE_PIXELS = 1_150_000
_NO_IMAGE = {"title": "Text only request", "description": "No image was provided.", "keywords": [], "tags": [], "ocr_texts": []}


def _image_tokens(width: int, height: int) -> int:
    scale = min(1.0, CLAUDE_SCALE_EDGE / max(width, height), math.sqrt(CLAUDE_SCALE_PIXELS / (width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / 750))


def handle_claude(server: BedrockServer, model_id: str, body: dict[str, Any], rec: dict[str, Any]):
    """Answer one Claude InvokeModel request (called from ``BedrockServer``).

    Returns:
        ``(status, answer, headers, (input_tokens, output_tokens))``.

    Raises:
        ServiceError: 400 ValidationException for a body the service would refuse; injected faults.
    """
    max_tokens, tools, tool = _check_parameters(model_id, body)
    text_chars = len(json.dumps(tools)) if tools else 0
    if isinstance(body.get("system"), str):
        text_chars += len(body["system"])
    images, text_chars = _read_messages(body.get("messages"), text_chars)
    facts = [server.facts.facts_for(data, media_type, size=size) for data, media_type, size in images]
    turns = len(body["messages"])
    rec.update(
        media_types=tuple(f.media_type for f in facts),
        image_sha256=tuple(f.sha256 for f in facts),
        turns=turns,
        max_tokens=max_tokens,
    )
    fault = server.draw_fault("anthropic", followup=turns > 1, images=tuple(facts))

    input_tokens = max(1, math.ceil(text_chars / 4)) + sum(_image_tokens(f.width, f.height) for f in facts)
    metadata = metadata_for(facts[0]) if facts else dict(_NO_IMAGE)
    content, stop_reason, detail = _content(server, metadata, tool, fault, max_tokens)
    output_tokens = text_tokens(json.dumps(content))
    outcome = ANSWER_OUTCOMES.get(fault or "", "ok")
    if outcome == "ok" and stop_reason == "max_tokens":
        detail = "natural_truncation"
    rec.update(outcome=outcome, detail=detail)
    if stop_reason == "max_tokens" or fault == "hostile_rate":
        output_tokens = min(output_tokens, max_tokens) if fault == "hostile_rate" else max_tokens
    answer = {
        "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": base_model(model_id).split(".", 1)[-1],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    headers = {
        "X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": str(output_tokens),
    }
    return server.deliver(fault, answer, headers, (input_tokens, output_tokens), rec)


def _content(
    server: BedrockServer, metadata: dict[str, Any], tool: str | None, fault: str | None, max_tokens: int
) -> tuple[list[dict[str, Any]], str, str]:
    """``(content blocks, stop_reason, detail)``: the metadata as the model writes it, or a fault."""
    budget = max_tokens * 4  # characters the model may write
    tool_id = f"toolu_bdrk_{uuid.uuid4().hex[:24]}"
    if fault == "refusal_rate":
        stop = server.faults.choice(["end_turn", "refusal"])
        return [{"type": "text", "text": "I'm sorry, but I can't help with describing this image."}], stop, f"refusal:{stop}"
    if fault == "malformed_rate":
        variant = server.faults.choice(["prose", "fence", "trailing_comma", "broken"])
        compact = json.dumps(metadata)
        if variant == "prose":
            text = f"Here is the metadata for the image:\n{compact}\nLet me know if you need anything else."
        elif variant == "fence":
            text = "```json\n" + json.dumps(metadata, indent=2) + "\n```"
        elif variant == "trailing_comma":
            text = compact[:-1] + ",}"
        else:
            text = compact.replace('", "', '" "', 1)[:-1]
        return [{"type": "text", "text": text}], "end_turn", f"malformed:{variant}"
    if fault == "hostile_rate":
        seed = server.faults.choice(range(2**31))  # one seeded draw: the answer follows from it
        blocks, variant = hostile_answer(random.Random(seed), metadata, tool or "record_image_metadata", tool_id)
        return blocks, "tool_use", f"hostile:{variant}"
    if fault == "truncated_rate":
        budget = min(budget, max(8, len(json.dumps(metadata)) // 2))
    if tool is None:
        text = json.dumps(metadata)
        if len(text) > budget:
            return [{"type": "text", "text": text[:budget]}], "max_tokens", "truncated:text"
        return [{"type": "text", "text": text}], "end_turn", ""
    if len(json.dumps(metadata)) > budget:
        if fault == "truncated_rate" and server.faults.choice([True, False]):
            text = json.dumps(metadata)[:budget]
            return [{"type": "text", "text": text}], "max_tokens", "truncated:text"
        partial = _truncate_fields(metadata, budget)
        return [{"type": "tool_use", "id": tool_id, "name": tool, "input": partial}], "max_tokens", "truncated:tool_use"
    return [{"type": "tool_use", "id": tool_id, "name": tool, "input": metadata}], "tool_use", ""


def _truncate_fields(metadata: dict[str, Any], budget_chars: int) -> dict[str, Any]:
    """The fields whose serialisation fits in ``budget_chars`` (a cut tool input)."""
    out: dict[str, Any] = {}
    used = 2
    for key, value in metadata.items():
        piece = len(json.dumps({key: value})) - 1
        if used + piece > budget_chars:
            if isinstance(value, str) and not out:
                out[key] = value[: max(0, budget_chars - used - len(key) - 6)]
            break
        out[key] = value
        used += piece
    return out
