"""The one token estimator: image tokens after Claude's scaling, text at 3.5 characters a token."""

from __future__ import annotations

from media_enrichment.tokens import image_tokens, request_tokens, text_tokens


def test_image_tokens_follow_the_scaling_claude_applies():
    assert image_tokens(200, 150) == 40  # 30,000 px / 750
    assert image_tokens(32, 24) == 2  # 768 px / 750, rounded up
    assert image_tokens(1, 1) == 1
    # Scaled to <= 1568 px long edge and <= 1.15 MP first: 1313 x 875 = 1,148,875 px -> 1532.
    assert image_tokens(6000, 4000) == 1532
    assert image_tokens(1500, 1000) == 1532
    assert image_tokens(1313, 875) == 1532  # already within the limits: not scaled again


def test_text_tokens_are_one_per_three_and_a_half_characters():
    assert text_tokens("") == 0
    assert text_tokens("a") == 1
    assert text_tokens("x" * 7) == 2
    assert text_tokens("x" * 8) == 3  # 8 / 3.5 = 2.29, rounded up
    assert text_tokens(3500) == 1000  # a length works as well as the text
    assert text_tokens(4000) == 1143  # 4 characters a token would say 1000: this errs high


def test_a_request_counts_its_image_and_its_text():
    assert request_tokens(200, 150, "x" * 35) == 50
    assert request_tokens(32, 24, 0) == 2
