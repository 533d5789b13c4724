"""The captioning floor: the CIDEr-D of the best single caption given to every image.

A model that ignores its image can do no better than one fixed caption; the best one from the
training captions, chosen on the split it is reported for, bounds what such a model scores there.
Scoring each candidate with ``pycocoevalcap`` would cost one corpus evaluation per candidate, so
:class:`ConstantCaptionScorer` computes pycocoevalcap's CIDEr-D of a caption given to every image
in one pass over an inverted n-gram index (the same tf-idf, clipping, length penalty and its length
counted in bigrams, as ``CiderScorer`` does); a test checks it against pycocoevalcap.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

SIGMA = 6.0
ORDERS = 4


def ngram_counts(caption: str, orders: int = ORDERS) -> Counter:
    """Counts of the 1..``orders``-grams of a tokenized caption (words split on spaces)."""
    words = caption.split()
    return Counter(tuple(words[i : i + n]) for n in range(1, orders + 1) for i in range(len(words) - n + 1))


class ConstantCaptionScorer:
    """CIDEr-D of one caption given to every image of a corpus.

    Args:
        references: per image, its tokenized reference captions (the IDF comes from them).
    """

    def __init__(self, references: list[list[str]]) -> None:
        self.images = len(references)
        self.log_images = np.log(float(self.images))
        counts = [[ngram_counts(ref) for ref in refs] for refs in references]
        self.document_frequency: Counter = Counter(g for refs in counts for g in {g for ref in refs for g in ref})
        self.image_of_ref = np.array([i for i, refs in enumerate(counts) for _ in refs])
        self.refs_per_image = np.array([len(refs) for refs in counts], dtype=np.float64)
        flat = [ref for refs in counts for ref in refs]
        self.ref_norms = np.zeros((len(flat), ORDERS))
        self.ref_lengths = np.zeros(len(flat))
        postings: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
        for r, ref in enumerate(flat):
            for gram, count in ref.items():
                weight = count * self.idf(gram)
                self.ref_norms[r, len(gram) - 1] += weight**2
                postings[gram].append((r, weight))
            self.ref_lengths[r] = sum(count for gram, count in ref.items() if len(gram) == 2)  # as CiderScorer
        self.ref_norms = np.sqrt(self.ref_norms)
        self.postings = {g: (np.array([r for r, _ in p]), np.array([w for _, w in p])) for g, p in postings.items()}

    def idf(self, gram: tuple) -> float:
        return self.log_images - np.log(max(1.0, self.document_frequency[gram]))

    def score(self, caption: str) -> float:
        """Corpus CIDEr-D (0..10 scale) of the tokenized ``caption`` given to every image."""
        grams = ngram_counts(caption)
        weights = {gram: count * self.idf(gram) for gram, count in grams.items()}
        norms = np.zeros(ORDERS)
        for gram, weight in weights.items():
            norms[len(gram) - 1] += weight**2
        norms = np.sqrt(norms)
        length = sum(count for gram, count in grams.items() if len(gram) == 2)
        similarity = np.zeros((len(self.ref_lengths), ORDERS))  # (refs, n)
        for gram, weight in weights.items():
            if gram not in self.postings:
                continue
            refs, ref_weights = self.postings[gram]
            similarity[refs, len(gram) - 1] += np.minimum(weight, ref_weights) * ref_weights
        with np.errstate(divide="ignore", invalid="ignore"):
            denominator = norms[None, :] * self.ref_norms
            similarity = np.where(denominator > 0, similarity / denominator, similarity)
        similarity *= np.exp(-((length - self.ref_lengths) ** 2) / (2 * SIGMA**2))[:, None]
        per_image = np.bincount(self.image_of_ref, weights=similarity.mean(axis=1), minlength=self.images)
        return float(np.mean(10.0 * per_image / self.refs_per_image))


def best_constant_caption(candidates: list[str], references: list[list[str]], limit: int) -> tuple[str, float, int]:
    """The candidate (tokenized) whose constant CIDEr-D over ``references`` is highest.

    Candidates are the distinct ones, most frequent first (first seen among equals), at most
    ``limit`` of them (0: all); ties go to the earlier one.

    Returns:
        ``(caption, CIDEr-D, candidates scored)``.
    """
    frequency = Counter(candidates)
    order = sorted(frequency, key=lambda c: -frequency[c])  # sorted is stable: first seen among equals
    if limit:
        order = order[:limit]
    scorer = ConstantCaptionScorer(references)
    best, best_score = "", -1.0
    for caption in order:
        score = scorer.score(caption)
        if score > best_score:
            best, best_score = caption, score
    return best, best_score, len(order)
