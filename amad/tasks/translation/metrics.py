"""Translation metrics with ``sacrebleu``, on detokenised output against one reference a sentence.

BLEU (primary; sacreBLEU's default 13a tokenisation, exponential smoothing) and chrF, each cased and
lowercased (VL-T5, which the AMAD paper builds on, reports lowercased sacreBLEU); every score keeps
its sacreBLEU signature, so a number says how it was computed. METEOR runs where its language is
supported: ``pycocoevalcap``'s METEOR 1.5 ships the English paraphrase tables alone, so it scores
English targets only and reports why for the others.
"""

from __future__ import annotations

from typing import Any

METEOR_LANGUAGES = ("en",)


def translation_metrics(hypotheses: list[str], references: list[str], target_language: str) -> dict[str, Any]:
    """``{bleu, bleu_lowercase, chrf, chrf_lowercase, meteor | meteor_skipped, signatures, sentences}``
    of the corpus ``hypotheses`` against ``references`` (the same order)."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    scores: dict[str, Any] = {"signatures": {}}
    for name, metric in (
        ("bleu", BLEU(trg_lang=target_language)),
        ("bleu_lowercase", BLEU(lowercase=True, trg_lang=target_language)),
        ("chrf", CHRF()),
        ("chrf_lowercase", CHRF(lowercase=True)),
    ):
        scores[name] = metric.corpus_score(hypotheses, [references]).score
        scores["signatures"][name] = str(metric.get_signature())
    if target_language in METEOR_LANGUAGES:
        scores["meteor"] = _meteor(hypotheses, references)
    else:
        scores["meteor_skipped"] = (
            f"METEOR: pycocoevalcap's METEOR 1.5 has paraphrase tables for English only; target language {target_language}"
        )
    scores["sentences"] = len(hypotheses)
    return scores


def _meteor(hypotheses: list[str], references: list[str]) -> float:
    """pycocoevalcap's METEOR 1.5 (English; Java) of the corpus."""
    from pycocoevalcap.meteor.meteor import Meteor

    from amad.tasks.translation.java import require_java

    require_java()
    keys = [str(i) for i in range(len(hypotheses))]
    score, _ = Meteor().compute_score(
        {k: [r] for k, r in zip(keys, references)}, {k: [h or "."] for k, h in zip(keys, hypotheses)}
    )
    return float(score)
