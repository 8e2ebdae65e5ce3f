"""Random answers: ``parse_claude_answer`` returns usable, capped and clean metadata or a problem,
never raises, and quickly, whatever the model sent (an answer is untrusted input)."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from media_enrichment.providers.bedrock.answers import (
    MAX_RAW_CHARS,
    TOOL_NAME,
    ParsedAnswer,
    parse_claude_answer,
)
from media_enrichment.schema import ImageMetadata
from tests.helpers import fuzz_settings
from tests.test_answers_hostile import _DIRTY, assert_clean_metadata

#: Seconds one parse may take, far above what any of these need (a bound, not a benchmark).
BOUND_S = 1.0
FUZZ = fuzz_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = ("title", "description", "keywords", "tags", "ocr_texts")
#: Every code point, surrogates and controls included, with escape sequences and markup mixed in.
_CHARS = st.characters(exclude_categories=())
_NASTY = st.sampled_from(
    ["\x1b[31m", "\x1b[2J", "\x1b]0;t\x07", "\x1b", "\x9b", "\x00", "\x08", "\x7f", "\r\n", "\u2028", "\u202e",
     "\ud800", "<script>", ",", ";", "\n", "[", "{", '"', "```json\n", "```"]
)
TEXT = st.lists(st.one_of(st.text(_CHARS, max_size=12), _NASTY), max_size=12).map("".join)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), inner, max_size=6)),
    max_leaves=16,
)
TOOL_INPUT = st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), JSONISH, max_size=6)
_FRAGMENTS = st.sampled_from(
    ['{', '}', '[', ']', ',', ':', '"title": ', '"description": ', '"keywords": ', '"tags": ', '"ocr_texts": ',
     '"x"', '"Red door"', '1', 'null', 'true', '```json\n', '```', 'Here is the metadata: ', '\n', '\\u001b', '\x1b[31m']
)
JSON_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(_CHARS, max_size=6)), max_size=40).map("".join)


def _check(answer: object) -> ParsedAnswer:
    started = time.perf_counter()
    parsed = parse_claude_answer(answer)  # type: ignore[arg-type]  # anything else propagates
    assert time.perf_counter() - started < BOUND_S
    assert isinstance(parsed, ParsedAnswer)
    assert isinstance(parsed.raw, str) and len(parsed.raw) <= MAX_RAW_CHARS
    assert not _DIRTY.search(parsed.raw.replace("\n", " "))
    if parsed.metadata is None:
        assert parsed.kind != "ok" and parsed.problem and not _DIRTY.search(parsed.problem)
    else:
        assert parsed.kind == "ok" and isinstance(parsed.metadata, ImageMetadata)
        assert_clean_metadata(parsed.metadata.model_dump())
    return parsed


@FUZZ
@given(tool_input=TOOL_INPUT, name=st.one_of(st.just(TOOL_NAME), st.none(), TEXT), stop=st.sampled_from(["tool_use", "end_turn", "max_tokens", None]))
def test_random_tool_inputs(tool_input, name, stop):
    parsed = _check({"content": [{"type": "tool_use", "id": "t", "name": name, "input": tool_input}], "stop_reason": stop})
    if name != TOOL_NAME and stop not in ("max_tokens",):
        assert parsed.metadata is None


@FUZZ
@given(
    title=TEXT, description=TEXT, rest=st.dictionaries(st.sampled_from(FIELDS[2:]), JSONISH, max_size=3)
)
def test_random_values_under_the_schema_keys_are_repaired_or_refused(title, description, rest):
    """Text fields of any content: metadata whenever something is left once cleaned."""
    parsed = _check({"content": [{"type": "tool_use", "name": TOOL_NAME, "input": {"title": title, "description": description, **rest}}],
                     "stop_reason": "tool_use"})
    if parsed.metadata is None:
        assert parsed.kind == "invalid"


@FUZZ
@given(text=JSON_TEXT)
def test_random_json_ish_text_answers(text):
    _check({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"})


@FUZZ
@given(body=JSONISH)
def test_random_bodies(body):
    _check(body if isinstance(body, dict) else {"content": body})


@fuzz_settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool_input=TOOL_INPUT)
def test_round_trip_through_json_text(tool_input):
    """The same input, sent as text holding JSON (as a model without tools would), is as safe."""
    try:
        text = "Sure:\n```json\n" + json.dumps(tool_input) + "\n```"
    except ValueError:
        return
    _check({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"})
