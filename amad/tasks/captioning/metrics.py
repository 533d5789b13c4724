"""Captioning metrics as COCO reports them, computed by ``pycocoevalcap``.

Captions are tokenized by the Stanford PTB tokenizer (lower case, punctuation removed), then scored
with CIDEr-D (``pycocoevalcap``'s ``Cider``: the n-gram clipping and Gaussian length penalty of
CIDEr-D, sigma 6), BLEU-1..4, METEOR 1.5 and ROUGE-L. The PTB tokenizer and METEOR run on Java.

CIDEr-D weighs n-grams by an IDF computed from the references of the images evaluated together, so a
score is only comparable across runs on the same whole split: :func:`caption_metrics` always scores
the set it is given as one corpus and records its size.
"""

from __future__ import annotations

import contextlib
import io
import shutil

from amad.errors import AmadError

CIDER = "CIDEr-D"
METRICS = (CIDER, "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")
JAVA_MISSING = (
    "captioning metrics need Java (pycocoevalcap runs the Stanford PTB tokenizer and METEOR on it), "
    "and `java` is not on PATH: install a Java runtime, e.g. `apt-get install default-jre-headless`"
)


def require_java() -> None:
    """AmadError in one line where ``java`` is missing."""
    if shutil.which("java") is None:
        raise AmadError(JAVA_MISSING)


def ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each caption PTB-tokenized, lower case, punctuation removed: ``{id: [caption, ...]}`` in, the
    same keys and counts out (one Java run for all)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    require_java()
    flat = [text.replace("\n", " ").replace("\r", " ") for texts in captions.values() for text in texts]
    if not flat:
        return {key: [] for key in captions}
    tokenized = PTBTokenizer().tokenize({"all": [{"caption": text} for text in flat]})["all"]
    out, position = {}, 0
    for key, texts in captions.items():
        out[key] = tokenized[position : position + len(texts)]
        position += len(texts)
    return out


def caption_metrics(
    predictions: dict[str, str], references: dict[str, list[str]], meteor: bool = True
) -> dict[str, float | int]:
    """Corpus scores of ``predictions`` (one caption per image id) against ``references`` (every
    human caption of each image), the ids of both the same.

    Returns:
        ``{"CIDEr-D", "BLEU-1".."BLEU-4", "METEOR" (unless ``meteor`` is False), "ROUGE-L": float,
        "images": int, "references": int}``; scores on the 0..1 scale as pycocoevalcap gives them
        (CIDEr-D on its own 0..10 scale).
    """
    if set(predictions) != set(references):
        missing = sorted(set(references) - set(predictions))[:3]
        extra = sorted(set(predictions) - set(references))[:3]
        raise ValueError(f"predictions and references name different images (missing {missing}, extra {extra})")
    if not references:
        raise ValueError("no images to score")
    ids = sorted(references)
    tokens = ptb_tokenize(
        {
            **{f"r{i}": references[key] for i, key in enumerate(ids)},
            **{f"h{i}": [predictions[key]] for i, key in enumerate(ids)},
        }
    )
    gts = {str(i): tokens[f"r{i}"] for i in range(len(ids))}
    res = {str(i): tokens[f"h{i}"] for i in range(len(ids))}
    return {**corpus_scores(gts, res, meteor), "images": len(ids), "references": sum(map(len, gts.values()))}


def corpus_scores(gts: dict[str, list[str]], res: dict[str, list[str]], meteor: bool = True) -> dict[str, float]:
    """pycocoevalcap's scorers on already tokenized captions (``{id: [tokenized caption]}``)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    scores: dict[str, float] = {}
    scores[CIDER] = float(Cider().compute_score(gts, res)[0])
    with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its counts
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"BLEU-{n}": float(value) for n, value in enumerate(bleu, start=1)})
    if meteor:
        scores["METEOR"] = meteor_score(gts, res)
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    return scores


def meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """METEOR 1.5 over the corpus (its Java process is stopped afterwards)."""
    from pycocoevalcap.meteor.meteor import Meteor

    require_java()
    scorer = Meteor()
    try:
        # METEOR's Java reads a hypothesis line per image; an empty one would end its input early
        safe = {key: [value[0] or "."] for key, value in res.items()}
        return float(scorer.compute_score(gts, safe)[0])
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
