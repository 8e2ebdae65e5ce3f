"""Request bodies: spliced around their base64 images, byte for byte what json.dumps writes."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_enrichment.images.encode import Base64Text, PreparedImage
from media_enrichment.providers.bedrock.invoke import BodyFrames, json_bytes
from tests.helpers import fuzz_settings


def reference(body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def test_a_claude_body_with_two_images_is_the_same_bytes():
    first, second = PreparedImage(b"\x89PNG" * 100, "image/png", 1, 1), PreparedImage(b"\xff\xd8" * 7, "image/jpeg", 1, 1)
    body = {
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "data": first.base64}},
                {"type": "image", "source": {"type": "base64", "data": second.base64}},
                {"type": "text", "text": "Décris l'image \u2014 \"exactement\"\n"},
            ]},
        ],
        "max_tokens": 800,
        "temperature": 0.2,
        "flags": [True, None],
    }
    assert isinstance(first.base64, Base64Text) and first.base64 is first.base64  # computed once
    assert json_bytes(body) == reference(body)
    assert json.loads(json_bytes(body))["messages"][0]["content"][1]["source"]["data"] == base64.b64encode(b"\xff\xd8" * 7).decode()


def test_a_body_without_images_is_plain_json():
    assert json_bytes({"inputText": "a cat", "n": [1, 2.5]}) == b'{"inputText":"a cat","n":[1,2.5]}'


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.binary(max_size=40).map(lambda b: Base64Text(base64.b64encode(b).decode())),
)
_bodies = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20
)


@fuzz_settings(max_examples=200, deadline=None)
@given(_bodies)
def test_any_body_is_byte_for_byte_what_json_dumps_writes(body):
    assert json_bytes(body) == reference(body)


def _claude_like(data: Base64Text, media_type: str = "image/png") -> dict:
    return {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 800,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}},
            {"type": "text", "text": "Décris l'image \u2014 \"exactement\"\n"},
        ]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }


@fuzz_settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.sampled_from(["image/png", "image/jpeg"]))
def test_framed_bodies_are_byte_for_byte_the_bodies_serialised_whole(images, media_type):
    frames = BodyFrames()
    for data in images:
        image = PreparedImage(data, media_type, 1, 1)
        framed = frames.payload(media_type, image.base64, lambda b64: _claude_like(b64, media_type))
        assert framed == reference(_claude_like(image.base64, media_type))


def test_a_frame_is_kept_per_key_so_another_media_type_gets_its_own():
    frames = BodyFrames()
    png, jpeg = PreparedImage(b"png", "image/png", 1, 1), PreparedImage(b"jpg", "image/jpeg", 1, 1)
    frames.payload("image/png", png.base64, lambda b64: _claude_like(b64, "image/png"))
    framed = frames.payload("image/jpeg", jpeg.base64, lambda b64: _claude_like(b64, "image/jpeg"))
    assert json.loads(framed)["messages"][0]["content"][0]["source"] == {
        "type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(b"jpg").decode(),
    }


def test_a_body_that_does_not_hold_its_image_once_is_refused():
    image = PreparedImage(b"x", "image/png", 1, 1)
    with pytest.raises(ValueError, match="2 times"):
        BodyFrames().payload("two", image.base64, lambda b64: {"a": b64, "b": b64})
    with pytest.raises(ValueError, match="0 times"):
        BodyFrames().payload("none", image.base64, lambda b64: {"a": "no image"})
