"""An embedding model's vector is data too: only a list of ``dim`` finite JSON numbers becomes a
vector, whatever else an answer holds (on demand and in batch results, which share
``embedding_vector``)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from media_enrichment.errors import InvalidResponseError
from media_enrichment.providers.bedrock.embedders import embedding_vector


def _vector(embedding, dim=4):
    return embedding_vector(embedding, {"embedding": embedding}, model_id="amazon.titan-embed-image-v1", dim=dim)


def test_json_numbers_become_a_float32_vector():
    vector = _vector(json.loads("[0.25, -1, 3e-5, 0]"))
    assert vector.dtype == np.float32 and vector.shape == (4,)
    assert vector.tolist() == pytest.approx([0.25, -1.0, 3e-5, 0.0])


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ('["0.5", "0.5", "0.5", "0.5"]', "non-numeric"),  # numbers as strings: numpy would parse them
        ("[true, false, true, 0.5]", "non-numeric"),  # booleans: numpy would read 1 and 0
        ("[null, 0.1, 0.2, 0.3]", "non-numeric"),  # null: numpy would read NaN
        ("[[0.1], 0.1, 0.2, 0.3]", "non-numeric"),
        ('[{"x": 1}, 0.1, 0.2, 0.3]', "non-numeric"),
        ("[NaN, 0.1, 0.2, 0.3]", "non-finite"),  # Python's json reads NaN and Infinity
        ("[0.1, -Infinity, 0.2, 0.3]", "non-finite"),
        ("[1e999, 0.1, 0.2, 0.3]", "non-finite"),  # beyond float64: inf
        ("[1e39, 0.1, 0.2, 0.3]", "non-finite"),  # finite, beyond float32
        ("[0.1, 0.2]", "embedding of 2, expected 4"),
        ('{"0": 0.1}', "embedding of dict"),
        ('"0.1,0.2,0.3,0.4"', "embedding of str"),
        ("null", "embedding of NoneType"),
    ],
)
def test_anything_else_is_refused_as_a_bad_embedding(answer, refusal):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's cast overflow, for 1e39
        with pytest.raises(InvalidResponseError, match=refusal) as raised:
            _vector(json.loads(answer))
    assert raised.value.code == "BadEmbedding"
