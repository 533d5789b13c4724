"""Answer normalisation (VQA convention), the answer vocabulary and VQA accuracy."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "dont": "don't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "arent": "aren't",
    "cant": "can't",
    "wont": "won't",
    "im": "i'm",
    "ive": "i've",
    "youre": "you're",
    "thats": "that's",
}
_PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:]")
_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def normalize_answer(answer: str) -> str:
    """Lower case, strip punctuation (keeping decimal points), number words -> digits, drop articles."""
    text = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    text = _PERIOD.sub("", _PUNCTUATION.sub(" ", text)).replace("'", "'")
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def build_vocabulary(answer_lists: Iterable[Sequence[str]], max_answers: int) -> list[str]:
    """The ``max_answers`` most frequent normalised answers (ties broken alphabetically)."""
    counts = Counter(normalize_answer(a) for answers in answer_lists for a in answers)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [answer for answer, _ in ranked[:max_answers]]


def answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """VQA soft score of each distinct answer: ``min(1, matches / min(3, len(answers)))``."""
    normalized = [normalize_answer(a) for a in answers]
    needed = min(3, len(normalized))
    return {answer: min(1.0, count / needed) for answer, count in Counter(normalized).items()}


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Accuracy of one prediction: VQA soft accuracy for 10-answer data, exact match for 1 answer."""
    return answer_scores(answers).get(normalize_answer(prediction), 0.0)
