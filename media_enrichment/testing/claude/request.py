"""Claude requests on the test server: an Anthropic Messages body checked the way Bedrock checks it.

The API version, ``max_tokens``, sampling parameters (``claude.rules``), tools and
``tool_choice``, alternating roles, tool results after tool uses, and images: media type against
the bytes, 5 MB of base64, 8000 px a side, 20 per request. A body the service would refuse raises
a 400 ``ValidationException``.
"""

from __future__ import annotations

import json
from typing import Any

from media_enrichment.testing.claude.rules import SAMPLING_MESSAGE, _refuses_temperature_with_top_p
from media_enrichment.testing.content import decode_image, image_size
from media_enrichment.testing.errors import validation
from media_enrichment.testing.models import base_model

__all__ = ["ANTHROPIC_VERSION", "CLAUDE_MAX_BASE64", "CLAUDE_MAX_IMAGES", "CLAUDE_MAX_SIDE", "CLAUDE_MEDIA_TYPES"]

ANTHROPIC_VERSION = "bedrock-2023-05-31"

CLAUDE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
CLAUDE_MAX_BASE64 = 5 * 1024 * 1024
CLAUDE_MAX_SIDE = 8000
CLAUDE_MAX_IMAGES = 20


def _check_parameters(model_id: str, body: dict[str, Any]) -> tuple[int, list[Any], str | None]:
    """``(max_tokens, tools, the tool the answer must use)`` of a valid body."""
    version = body.get("anthropic_version")
    if version is None:
        raise validation("Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.")
    if version != ANTHROPIC_VERSION:
        raise validation(f"Invalid API version: {version!r}; expected {ANTHROPIC_VERSION!r}")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise validation("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise validation("max_tokens: Input should be a positive integer")
    if "temperature" in body and "top_p" in body and _refuses_temperature_with_top_p(base_model(model_id)):
        raise validation(SAMPLING_MESSAGE)
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise validation("tools: Input should be a valid list")
    tool_names = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise validation(f"tools.{i}.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise validation(f"tools.{i}.input_schema: Input schema must be an object with type 'object'")
        tool_names.append(tool["name"])
    tool_choice = body.get("tool_choice")
    forced: str | None = None
    if tool_choice is not None:
        if not isinstance(tool_choice, dict) or tool_choice.get("type") not in ("auto", "any", "tool", "none"):
            raise validation("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
        if tool_choice.get("type") in ("auto", "any", "tool") and not tools:
            raise validation("tool_choice may only be specified while providing tools.")
        if tool_choice.get("type") == "tool":
            forced = tool_choice.get("name")
            if forced not in tool_names:
                raise validation(f"Tool '{forced}' not found in provided tools")
        elif tool_choice.get("type") == "any":
            forced = tool_names[0]
    return max_tokens, tools, forced or (tool_names[0] if tool_names else None)


def _read_messages(messages: Any, text_chars: int) -> tuple[list[tuple[bytes, str, tuple[int, int]]], int]:
    """The images of valid ``messages`` and the characters of text they carry in all."""
    if not isinstance(messages, list) or not messages:
        raise validation("messages: at least one message is required")
    images: list[tuple[bytes, str, tuple[int, int]]] = []
    previous_role = None
    pending_tool_ids: set[str] = set()
    for m, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise validation(f"messages.{m}.role: Input should be 'user' or 'assistant'")
        role = message["role"]
        if m == 0 and role != "user":
            raise validation('messages: first message must use the "user" role')
        if role == previous_role:
            raise validation(f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row')
        previous_role = role
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                raise validation(f"messages.{m}: user messages must have non-empty content")
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list) or not content:
            raise validation(f"messages.{m}: all messages must have non-empty content except for the optional final assistant message")
        result_ids = set()
        for c, block in enumerate(content):
            where = f"messages.{m}.content.{c}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    raise validation("messages: text content blocks must be non-empty")
                text_chars += len(block["text"])
            elif kind == "image":
                if role != "user":
                    raise validation(f"{where}: images are only allowed in user messages")
                images.append(_image(block, f"{where}.image"))
            elif kind == "tool_use":
                if role != "assistant":
                    raise validation(f"{where}: tool_use blocks are only allowed in assistant messages")
                pending_tool_ids.add(str(block.get("id")))
                text_chars += len(json.dumps(block.get("input")))
            elif kind == "tool_result":
                result_ids.add(str(block.get("tool_use_id")))
                text_chars += len(json.dumps(block.get("content")))
            else:
                raise validation(f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
        if role == "user" and pending_tool_ids:
            if not pending_tool_ids <= result_ids:
                raise validation(
                    f"messages.{m}: tool_use ids were found without tool_result blocks immediately after: "
                    + ", ".join(sorted(pending_tool_ids - result_ids))
                )
            pending_tool_ids = set()
    if len(images) > CLAUDE_MAX_IMAGES:
        raise validation(f"messages: too many images, at most {CLAUDE_MAX_IMAGES} are allowed")
    return images, text_chars


def _image(block: dict[str, Any], where: str) -> tuple[bytes, str, tuple[int, int]]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise validation(f"{where}.source: Input tag found using 'type' does not match any of the expected tags: 'base64'")
    media_type = source.get("media_type")
    if media_type not in CLAUDE_MEDIA_TYPES:
        raise validation(f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
    encoded = source.get("data")
    if isinstance(encoded, str) and len(encoded) > CLAUDE_MAX_BASE64:
        raise validation(f"{where}.source.base64: image exceeds 5 MB maximum: {len(encoded)} bytes > {CLAUDE_MAX_BASE64} bytes")
    data, actual = decode_image(encoded, f"{where}.source.base64.data")
    if actual != media_type:
        raise validation(
            f"The image was specified using the {media_type} media type, but the image appears to be a {actual} image"
        )
    width, height = image_size(data)
    if width > CLAUDE_MAX_SIDE or height > CLAUDE_MAX_SIDE:
        raise validation(f"{where}.source.base64.data: At least one of the image dimensions exceed max allowed size: {CLAUDE_MAX_SIDE} pixels")
    return data, media_type, (width, height)
