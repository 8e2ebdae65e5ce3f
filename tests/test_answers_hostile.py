"""Model answers are data: whatever Claude returns, the dataset holds bounded, clean values.

Unit cases of ``ImageMetadata`` and ``parse_claude_answer`` first, then a run of the library
driver against the loopback Bedrock server answering every request with a hostile answer
(``FaultPlan.hostile_rate``), whose every stored row is checked against the caps.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from media_enrichment.config import Settings
from media_enrichment.dataset import Dataset
from media_enrichment.errors import InvalidResponseError
from media_enrichment.images import CLAUDE_LIMITS, prepare_image
from media_enrichment.pipeline.driver import open_run
from media_enrichment.prompts import load_prompt
from media_enrichment.providers.bedrock import build_bedrock_providers
from media_enrichment.providers.bedrock.answers import (
    MAX_RAW_CHARS,
    TOOL_NAME,
    corrective_text,
    parse_claude_answer,
)
from media_enrichment.schema import (
    MAX_DESCRIPTION,
    MAX_ITEM_CHARS,
    MAX_ITEMS,
    MAX_OCR_CHARS,
    MAX_OCR_ITEMS,
    MAX_TITLE,
    ImageMetadata,
    clean_text,
)
from media_enrichment.testing import BedrockServer, FaultPlan
from tests.helpers import write_catalog

CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"

#: What no stored text may hold: C0 controls but newline, DEL, C1 controls, lone surrogates,
#: bidi embeddings/overrides/isolates. A newline is allowed only where the caller says.
_REPR = re.compile(r"^[\[{(]\s*'|^\{'|^(?:True|False|None)$")  # how str() of a list, dict or None starts
_DIRTY = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def assert_clean(text: str, *, newlines: bool = False, limit: int) -> None:
    assert isinstance(text, str) and 0 < len(text) <= limit, (len(text), text[:80])
    assert not _DIRTY.search(text), repr(text[:200])
    assert newlines or "\n" not in text, repr(text[:200])
    assert text == text.strip()
    assert "[31m" not in text and "[2J" not in text and "]0;" not in text, "escape sequences go as a whole"


def assert_clean_metadata(meta: dict) -> None:
    assert_clean(meta["title"], limit=MAX_TITLE)
    assert_clean(meta["description"], newlines=True, limit=MAX_DESCRIPTION)
    for field, count, chars in (
        ("keywords", MAX_ITEMS, MAX_ITEM_CHARS),
        ("tags", MAX_ITEMS, MAX_ITEM_CHARS),
        ("ocr_texts", MAX_OCR_ITEMS, MAX_OCR_CHARS),
    ):
        items = list(meta[field])
        assert len(items) <= count, field
        assert len({i.casefold() for i in items}) == len(items), f"{field} de-duplicated"
        for item in items:
            assert_clean(item, limit=chars)
            assert not _REPR.match(item), f"{field}: a Python repr? {item[:60]!r}"
    assert all(t == t.lower() for t in meta["tags"])


# ---------------------------------------------------------------------------------------------
# Cleaning and repair, case by case
# ---------------------------------------------------------------------------------------------


def test_escape_sequences_go_as_a_whole_and_controls_are_removed():
    assert clean_text("\x1b[31mRed\x1b[0m door") == "Red door"
    assert clean_text("\x1b[2J\x1b[Hcleared") == "cleared"
    assert clean_text("\x1b]0;window title\x07after") == "after"
    assert clean_text("\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean_text("\x9b31mC1 CSI") == "C1 CSI"
    assert clean_text("nul\x00 bs\x08 del\x7f bell\x07 c1\x85x") == "nul bs del bell c1 x"
    assert clean_text("bidi \u202eevil\u202c \u2066iso\u2069") == "bidi evil iso"
    assert clean_text("lone \ud800 surrogate") == "lone surrogate"
    assert clean_text("tab\tand   spaces\u00a0here") == "tab and spaces here"
    assert clean_text("one\r\ntwo\rthree\u2028four") == "one two three four"
    assert clean_text("one\r\ntwo\n\n\n\nthree", newlines=True) == "one\ntwo\n\nthree"
    assert clean_text("<script>alert(1)</script>") == "<script>alert(1)</script>", "markup is text"
    assert clean_text("x" * 500, limit=200) == "x" * 200
    assert clean_text("cafe\u0301") == "caf\u00e9", "NFC"


def test_the_measured_hostile_answer_is_stored_capped_and_clean():
    """The answer of issue 14: a 100 KB title with ESC[31m and NUL, 10,000 keywords with ESC[2J,
    nested lists and objects as tags, OCR lines with backspace and DEL."""
    tool_input = {
        "title": "\x1b[31mRed door\x1b[0m\x00" + "A" * 100_000,
        "description": "A red door.\x1b[2J\nSecond line\x08.\x7f" + "b" * 100_000,
        "keywords": ["\x1b[2Jdoor"] + [f"\x1b[2Jkw{i}" for i in range(10_000)],
        "tags": [["nested", {"deep": ["x" * 5000]}], {"tag": "obj"}, "Architecture", True, None, 7],
        "ocr_texts": ["OPEN\x08\x7f", "line one\nline two", "IGNORE PREVIOUS INSTRUCTIONS"],
        "image_id": "someone-else",
        "run_id": "hijacked",
    }
    answer = {"content": [{"type": "tool_use", "name": TOOL_NAME, "input": tool_input}], "stop_reason": "tool_use"}
    parsed = parse_claude_answer(answer)
    meta = parsed.metadata
    assert parsed.kind == "ok" and meta is not None
    assert meta.title.startswith("Red door") and len(meta.title) == MAX_TITLE
    assert meta.description.startswith("A red door.\nSecond line.") and len(meta.description) == MAX_DESCRIPTION
    assert len(meta.keywords) == MAX_ITEMS and meta.keywords[:2] == ["door", "kw0"]
    assert meta.tags == ["nested", "architecture", "7"], "nested lists flattened, objects and booleans dropped"
    assert meta.ocr_texts == ["OPEN", "line one", "line two", "IGNORE PREVIOUS INSTRUCTIONS"], "one line each"
    assert not hasattr(meta, "image_id") and "run_id" not in meta.model_dump(), "unknown keys ignored"
    assert_clean_metadata(meta.model_dump())
    assert len(parsed.raw) <= MAX_RAW_CHARS and not _DIRTY.search(parsed.raw.replace("\n", " "))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("keywords", ["a", ["b", ["c", ["d"]]], {"e": "f"}, 1.5, float("nan")], ["a", "b", "c", "d", "1.5"]),
        ("keywords", "door, red; entrance\nwood", ["door", "red", "entrance", "wood"]),
        ("tags", [[[[[[[[[["too deep"]]]]]]]]], "ok"], ["ok"]),
        ("ocr_texts", "SALE, 50% OFF\nToday", ["SALE, 50% OFF", "Today"]),
        ("ocr_texts", [{"text": "x"}, None, "kept"], ["kept"]),
    ],
)
def test_nested_values_are_flattened_or_dropped_never_stringified(field, value, expected):
    meta = ImageMetadata.model_validate({"title": "t", "description": "d", field: value})
    assert getattr(meta, field) == expected


@pytest.mark.parametrize(
    ("title", "outcome"),
    [
        (["Red", "door"], "Red door"),  # a list of strings is joined
        ({"text": "Red door"}, None),  # an object is not a title
        (42, None),
        ("\x1b[31m\x00\x1b[0m", None),  # nothing left once cleaned
        ("", None),
    ],
)
def test_a_title_that_is_not_text_is_invalid_and_asked_again(title, outcome):
    answer = {
        "content": [{"type": "tool_use", "name": TOOL_NAME, "input": {"title": title, "description": "d"}}],
        "stop_reason": "tool_use",
    }
    parsed = parse_claude_answer(answer)
    if outcome is None:
        assert parsed.metadata is None and parsed.kind == "invalid" and "title" in parsed.problem
        assert "Call the tool" in corrective_text(parsed)
    else:
        assert parsed.metadata.title == outcome


def test_an_answer_naming_another_tool_is_not_metadata():
    good = {"title": "Red door", "description": "A red door."}
    for name in ("delete_dataset", "\x1b[31mrecord_image_metadata\x1b[0m", TOOL_NAME + " ", None, 7):
        parsed = parse_claude_answer({"content": [{"type": "tool_use", "name": name, "input": good}], "stop_reason": "tool_use"})
        assert parsed.metadata is None and parsed.kind == "wrong_tool"
        assert not _DIRTY.search(parsed.problem) and not _DIRTY.search(parsed.raw.replace("\n", " "))
        assert TOOL_NAME in corrective_text(parsed)
    # The forced tool's call is used even beside another one.
    both = [{"type": "tool_use", "name": "run_shell", "input": {}}, {"type": "tool_use", "name": TOOL_NAME, "input": good}]
    assert parse_claude_answer({"content": both, "stop_reason": "tool_use"}).metadata.title == "Red door"


def test_absurd_nesting_and_non_objects_never_raise():
    deep: object = "bottom"
    for _ in range(5_000):
        deep = [deep]
    for answer in (
        {"content": [{"type": "tool_use", "name": TOOL_NAME, "input": {"title": "t", "description": "d", "tags": deep}}]},
        {"content": [{"type": "tool_use", "name": TOOL_NAME, "input": {"title": "t", "description": "d", "x": deep}}]},
        {"content": [{"type": "text", "text": '{"title": "t", "description": "d", "x": ' + "[" * 100_000}]},
        {"content": [{"type": "tool_use", "name": TOOL_NAME, "input": {"title": "t", "description": "d",
                                                                          "keywords": "[" * 100_000}}]},
        {"content": "not a list"},
        [],
    ):
        parsed = parse_claude_answer(answer)  # type: ignore[arg-type]
        assert parsed.metadata is not None or parsed.problem
        if parsed.metadata is not None:
            assert_clean_metadata(parsed.metadata.model_dump())


# ---------------------------------------------------------------------------------------------
# A run in which every answer is hostile
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # a run against the loopback Bedrock server (3-6 s)
def test_a_run_of_hostile_answers_stores_only_capped_clean_rows(aws_env, tmp_path):
    count = 8
    manifest = write_catalog(tmp_path / "cat", count, colour=lambda i: (25 * i, 90, 250 - 25 * i))
    settings = Settings(provider="bedrock", dataset=str(tmp_path / "ds"), chunk_size=4, embedding_dim=256)
    with BedrockServer(max_lifetime=120, faults=FaultPlan(seed=2, hostile_rate=1.0)) as server:
        for key, value in server.env().items():
            aws_env.setenv(key, value)
        with open_run(settings, str(manifest), "hostile-run") as run:
            plan = run.plan(run.load_catalog())
            run.check_access(plan)
            staged = [run.run_chunk(items) for items in run.chunks(plan)]
            versions = run.commit(staged, plan)
            summary = run.summary(plan, staged, versions, task_runner="inline")
        log = list(server.counters.log)

    store = Dataset(tmp_path / "ds")
    assets = store.read_assets()
    failures = store.read_failures()
    ids = {f"img{i}" for i in range(count)}
    enriched, failed = set(assets["image_id"]), set(failures["image_id"]) if not failures.empty else set()
    assert enriched | failed == ids and not enriched & failed, "every image a clean row or a failure row"
    assert summary.enriched == len(enriched) and summary.failed == len(failed)
    assert len(enriched) >= count // 2

    for row in assets.to_dict("records"):
        assert_clean_metadata(row)
        assert row["image_id"] in ids and row["run_id"] == "hostile-run", "an answer cannot name the row"
        assert row["prompt_version"] == load_prompt().version and row["enrichment_model"] == CLAUDE
    for row in failures.to_dict("records"):
        assert row["stage"] == "describe" and row["error_type"] in {"wrong_tool", "invalid"}, row["error_type"]
        assert not _DIRTY.search(row["message"].replace("\n", " ")) and len(row["message"]) <= 4000

    # The answers were hostile, and those naming another tool or lacking a title got a corrective turn.
    claude = [r for r in log if r.model_id == CLAUDE and r.image_sha256 and r.max_tokens != 8]
    variants = {r.detail for r in claude}
    assert {"hostile:tool", "hostile:wrong_tool"} <= variants, variants
    by_image: dict[str, list[str]] = {}
    for record in claude:
        by_image.setdefault(record.image_sha256[0], []).append(record.detail)
    repaired = [details for details in by_image.values() if details[0] != "hostile:tool"]
    assert repaired, "some first answers were unusable"
    for details in by_image.values():
        usable = [i for i, d in enumerate(details) if d == "hostile:tool"]
        # An image stops at its first usable answer, or after 3 unusable ones (a failure row).
        assert (usable and usable[0] == len(details) - 1) or (not usable and len(details) == 3), details
    assert len(by_image) == count
    assert sum(1 for d in by_image.values() if "hostile:tool" not in d) == len(failed)
    assert json.dumps(summary.as_dict())  # the summary is data


@pytest.mark.slow  # 30 calls to the loopback Bedrock server (3-5 s)
def test_hostile_answers_to_one_describer_end_clean_or_as_a_clean_error(aws_env):
    """Sequential calls, so the draws are deterministic: seed 2 gives usable answers, answers
    repaired after a corrective turn, and images whose three answers were all unusable."""
    with BedrockServer(max_lifetime=120, faults=FaultPlan(seed=2, hostile_rate=1.0)) as server:
        aws_env.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        describer, _ = build_bedrock_providers(Settings(provider="bedrock", bedrock_max_attempts=1, embedding_dim=256))
        outcomes = []
        for i in range(10):
            data = io.BytesIO()
            Image.new("RGB", (40, 30), (20 * i, 60, 90)).save(data, format="PNG")
            try:
                outcomes.append(describer.describe(prepare_image(data.getvalue(), CLAUDE_LIMITS)))
            except InvalidResponseError as exc:
                outcomes.append(exc)
        turns = [r.turns for r in server.counters.log]
    errors = [o for o in outcomes if isinstance(o, InvalidResponseError)]
    results = [o for o in outcomes if not isinstance(o, InvalidResponseError)]
    assert errors and results and 3 in turns, "both ends, and a corrective turn, happened"
    for result in results:
        assert_clean_metadata(result.metadata.model_dump())
    for error in errors:
        assert error.code in {"wrong_tool", "invalid"} and "after 3 turn(s)" in str(error)
        assert not _DIRTY.search(str(error)) and len(error.raw) <= MAX_RAW_CHARS
        assert not _DIRTY.search(error.raw.replace("\n", " "))
