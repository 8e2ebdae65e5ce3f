"""clean_text's fast path (printable ASCII) gives what the full cleaning gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media_enrichment.schema import clean_text
from tests.helpers import fuzz_settings


@fuzz_settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60), st.sampled_from([None, 5, 30]), st.booleans())
def test_the_fast_path_agrees_with_the_full_cleaning(text, limit, newlines):
    # A NUL is removed by the full cleaning and keeps any text off the fast path.
    assert clean_text(text, limit=limit, newlines=newlines) == clean_text(text + "\x00", limit=limit, newlines=newlines)


def test_plain_text_is_returned_as_it_is_and_cut_to_the_limit():
    assert clean_text("a red car") == "a red car"
    assert clean_text("a red car", limit=5) == "a red"
    assert clean_text("a  red\tcar ") == "a red car"
    assert clean_text("a \x1b[31mred\x1b[0m car") == "a red car"
