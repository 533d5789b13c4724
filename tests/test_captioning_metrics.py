"""Captioning metrics: pycocoevalcap's scores (golden values), the constant-caption floor against
pycocoevalcap's CIDEr-D, and the one-line error where Java is missing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from amad.errors import AmadError
from amad.tasks.captioning import metrics
from amad.tasks.captioning.constant_caption import ConstantCaptionScorer, best_constant_caption
from amad.tasks.captioning.metrics import caption_metrics

REFERENCES = {
    "1": ["A dog runs on the grass.", "a brown dog running", "The dog is playing in a field."],
    "2": ["Two people ride bikes down a street.", "people cycling on a road"],
    "3": ["A red car parked by the house.", "a car in front of a home"],
}
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs java")


def random_corpus(seed: int, images: int = 40) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    words = [
        "a",
        "the",
        "dog",
        "cat",
        "runs",
        "sits",
        "on",
        "grass",
        "red",
        "blue",
        "big",
        "small",
        "in",
        "field",
        "near",
    ]
    return [
        [" ".join(rng.choice(words, rng.integers(1, 12))) for _ in range(rng.integers(1, 6))] for _ in range(images)
    ]


def pycocoevalcap_constant(caption: str, references: list[list[str]]) -> float:
    gts = {str(i): refs for i, refs in enumerate(references)}
    return Cider().compute_score(gts, {str(i): [caption] for i in range(len(references))})[0]


@needs_java
def test_caption_metrics_golden_values():
    predictions = {"1": "a dog running on grass", "2": "Two people, riding bikes!", "3": ""}
    scores = caption_metrics(predictions, REFERENCES)
    expected = {
        "CIDEr-D": 1.00127599465399,
        "BLEU-1": 0.4083785101634065,
        "BLEU-2": 0.28356377476383715,
        "BLEU-4": 5.799763188320481e-09,
        "METEOR": 0.2223435153712688,
        "ROUGE-L": 0.4298674839881464,
    }
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-9), name
    assert (scores["images"], scores["references"]) == (3, 7)
    assert set(scores) == {*metrics.METRICS, "images", "references"}


@needs_java
def test_a_caption_equal_to_every_reference_scores_one():
    references = {
        str(i): [text] for i, text in enumerate(["a dog runs on the green grass", "two cats sleep on a red sofa"])
    }
    scores = caption_metrics({key: refs[0] for key, refs in references.items()}, references, meteor=False)
    assert scores["BLEU-4"] == pytest.approx(1.0) and scores["ROUGE-L"] == pytest.approx(1.0)


def test_predictions_for_other_images_are_refused():
    with pytest.raises(ValueError, match="missing"):
        caption_metrics({"1": "a dog"}, REFERENCES)


def test_missing_java_is_one_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AmadError) as error:
        caption_metrics({key: "a dog" for key in REFERENCES}, REFERENCES)
    assert "\n" not in str(error.value) and "java" in str(error.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constant_caption_cider_equals_pycocoevalcap(seed):
    references = random_corpus(seed)
    scorer = ConstantCaptionScorer(references)
    candidates = ["a dog runs on the grass", "the", "", references[3][0], "zebra unseen words here"]
    for caption in candidates:
        assert scorer.score(caption) == pytest.approx(pycocoevalcap_constant(caption, references), rel=1e-12, abs=1e-15)


def test_the_best_constant_caption_is_the_argmax_over_the_candidates():
    references = random_corpus(3, images=25)
    candidates = [ref for refs in random_corpus(4, images=10) for ref in refs]
    caption, score, scored = best_constant_caption(candidates, references, limit=0)
    exact = {c: pycocoevalcap_constant(c, references) for c in candidates}
    assert scored == len(set(candidates))
    assert score == pytest.approx(max(exact.values()), rel=1e-12)
    assert exact[caption] == pytest.approx(score, rel=1e-12)
    _, _, limited = best_constant_caption([*candidates, candidates[0]], references, limit=3)
    assert limited == 3
