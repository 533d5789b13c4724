"""The captioning evaluation: every image of a split captioned by a predictor and scored as COCO does.

The whole split is one corpus (CIDEr-D's IDF comes from its references), so a score is comparable
across models on the same split only; the number of images and references is recorded with it.
With the ``evaluate`` settings the breakdown also has the best constant caption (the best single
training caption given to every image: what a model that ignores the image scores) and the first
images' captions beside their references.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXAMPLES = 8  # captions shown in the breakdown
METRIC_KEYS = {  # pycocoevalcap's names -> eval.json's
    "CIDEr-D": "cider_d",
    "BLEU-1": "bleu_1",
    "BLEU-2": "bleu_2",
    "BLEU-3": "bleu_3",
    "BLEU-4": "bleu_4",
    "METEOR": "meteor",
    "ROUGE-L": "rouge_l",
}


def split_captions(predictor: Any, dataset: Any, *, device: Any = "cpu", batch_size: int = 256) -> list[str]:
    """The predictor's caption of every image of ``dataset`` (a :class:`~amad.data.captions.pairs.PairDataset`), in order."""
    from amad.data.captions.pairs import ImageDataset
    from amad.models.evaluation import collect

    tokens = collect(predictor, ImageDataset(dataset), device=device, batch_size=batch_size)["tokens"]
    return [dataset.preprocess.decode(row) for row in tokens.tolist()]


def constant_caption_floor(dataset: Any, references: dict[str, list[str]], limit: int) -> dict[str, Any]:
    """``{"caption", "cider_d", "candidates"}``: the training caption with the highest CIDEr-D when
    given to every image of the split (both PTB-tokenized, as the metrics are)."""
    from amad.data.captions.sources import read_records
    from amad.tasks.captioning.constant_caption import best_constant_caption
    from amad.tasks.captioning.metrics import ptb_tokenize

    train = read_records(Path(dataset.root) / "train.jsonl")
    candidates = ptb_tokenize({"train": [c for r in train for c in r.captions]})["train"]
    tokenized = ptb_tokenize(references)
    caption, score, scored = best_constant_caption(candidates, [tokenized[key] for key in references], limit)
    return {"caption": caption, "cider_d": score, "candidates": scored}


def caption_report(predictor: Any, dataset: Any, settings: Any, *, device: Any = "cpu", batch_size: int = 256) -> dict:
    """``{"cider_d": ..., "breakdown": {...}}`` of the predictor's captions of the split (see the module
    docstring; ``settings`` None: CIDEr-D, BLEU and ROUGE-L only, without METEOR, the floor and examples)."""
    from amad.tasks.captioning.metrics import caption_metrics

    captions = split_captions(predictor, dataset, device=device, batch_size=batch_size)
    ids = [record.id for record in dataset.records]
    references = {record.id: list(record.captions) for record in dataset.records}
    scores = caption_metrics(dict(zip(ids, captions)), references, meteor=settings is not None)
    breakdown: dict[str, Any] = {METRIC_KEYS[name]: value for name, value in scores.items() if name in METRIC_KEYS}
    primary = breakdown.pop("cider_d")
    breakdown["images"], breakdown["references"] = scores["images"], scores["references"]
    breakdown["empty_captions"] = sum(not caption.strip() for caption in captions)
    tokens = [dataset.preprocess.token_count(caption) - 1 for caption in captions]  # the end token, not the start
    breakdown["mean_caption_tokens"] = round(sum(tokens) / len(tokens), 2)
    if settings is not None:
        breakdown["constant_caption"] = constant_caption_floor(dataset, references, settings.constant_candidates)
        breakdown["examples"] = [
            {"id": ids[i], "caption": captions[i], "references": references[ids[i]]}
            for i in range(min(EXAMPLES, len(ids)))
        ]
    return {"cider_d": primary, "breakdown": breakdown}
