"""The translation evaluation: every sentence of a split translated by a predictor and scored by
sacreBLEU (:mod:`amad.tasks.translation.metrics`), and the adversarial evaluation of multimodal
translation (Elliott 2018): the same sentences translated with each other's images (a seeded
derangement), whose BLEU drop says how much the model reads the image. A text-only model's drop is
0 by construction and reported as such."""

from __future__ import annotations

from typing import Any

EXAMPLES = 8  # translations shown in the breakdown


def split_translations(predictor: Any, dataset: Any, *, device: Any = "cpu", batch_size: int = 256) -> list[str]:
    """The predictor's translation of every sentence of ``dataset``, in order."""
    from amad.models.evaluation import collect

    tokens = collect(predictor, dataset, device=device, batch_size=batch_size)["tokens"]
    return [dataset.preprocess.decode(row) for row in tokens.tolist()]


def translation_report(
    predictor: Any, dataset: Any, settings: Any, *, device: Any = "cpu", batch_size: int = 256
) -> dict:
    """``{"bleu": ..., "breakdown": {...}}`` of the predictor's translations of the split (``settings``
    None: the metrics alone; with the ``evaluate`` settings, the shuffled-image BLEU and examples)."""
    from amad.tasks.translation.metrics import translation_metrics

    language = dataset.target_language
    translations = split_translations(predictor, dataset, device=device, batch_size=batch_size)
    references = [pair.target for pair in dataset.pairs]
    scores = translation_metrics(translations, references, language)
    primary = scores.pop("bleu")
    breakdown: dict[str, Any] = dict(scores)
    breakdown["empty_translations"] = sum(not text.strip() for text in translations)
    tokens = [dataset.preprocess.token_count(text) - 1 for text in translations]  # the end token, not the start
    breakdown["mean_translation_tokens"] = round(sum(tokens) / max(len(tokens), 1), 2)
    breakdown["reads_image"] = predictor.image
    if settings is not None:
        if settings.shuffled_images:
            breakdown["shuffled_images"] = shuffled_image_report(
                predictor, dataset, settings.shuffle_seed, primary, device=device, batch_size=batch_size
            )
        breakdown["examples"] = [
            {
                "id": dataset.pairs[i].id,
                "source": dataset.pairs[i].source,
                "translation": translations[i],
                "reference": references[i],
            }
            for i in range(min(EXAMPLES, len(translations)))
        ]
    return {"bleu": primary, "breakdown": breakdown}


def shuffled_image_report(
    predictor: Any, dataset: Any, seed: int, bleu: float, *, device: Any = "cpu", batch_size: int = 256
) -> dict[str, Any]:
    """``{bleu, chrf, image_drop, seed}``: the split translated with shuffled images; ``image_drop`` is
    ``bleu`` (the right images') minus it."""
    from amad.tasks.translation.metrics import translation_metrics

    if not predictor.image:
        return {"bleu": bleu, "image_drop": 0.0, "seed": seed, "note": "text-only model: it reads no image"}
    shuffled = dataset.with_shuffled_images(seed)
    translations = split_translations(predictor, shuffled, device=device, batch_size=batch_size)
    scores = translation_metrics(translations, [pair.target for pair in dataset.pairs], dataset.target_language)
    return {"bleu": scores["bleu"], "chrf": scores["chrf"], "image_drop": bleu - scores["bleu"], "seed": seed}
