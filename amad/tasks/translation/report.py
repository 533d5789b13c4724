"""The translation report's own pages: validation pairs with every model's translation, and the
decoder's cross-attention over the source sentence and over the image, teacher heads beside student
heads.

* ``reports/translations.png``: each validation image beside its source sentence, the teacher's
  greedy translation, every student's and the reference; ``summary.md`` gets the same as a table.
* ``reports/cross_attention/<model>/source.png``: the teacher's translation of one validation pair,
  teacher-forced through teacher and student; the last decoder layer's cross-attention over the
  source tokens, target token x source token per head (the soft alignment of the two sentences).
* ``reports/cross_attention/<model>/image.png`` (models that read the image): for each chosen target
  word, the last decoder layer's image cross-attention at the step that writes it, over the image
  through the attentional pooler (its attention over the pooler's tokens times the pooler's
  head-mean attention over the patches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from amad.report.decoder_pages import (
    EXAMPLES,
    chosen_words,
    markdown_table,
    printable,
    shown_image,
    spread,
    word_image_attention,
)


def _batch(dataset: Any, indices: list[int]) -> dict[str, torch.Tensor]:
    samples = [dataset[index] for index in indices]
    return {key: torch.stack([sample[key] for sample in samples]) for key in ("pixels", "source")}


@torch.no_grad()
def example_translations(models: dict[str, Any], dataset: Any, generation: Any, count: int = EXAMPLES) -> list[dict]:
    """``{"index", "id", "source", "reference", "translations": {model: text}}`` for ``count``
    validation pairs spread over the split, each model (a LoadedModel, teacher first) decoding with
    ``generation``."""
    indices = spread(count, len(dataset))
    batch = _batch(dataset, indices)
    rows = [
        {
            "index": index,
            "id": dataset.pairs[index].id,
            "source": dataset.pairs[index].source,
            "reference": dataset.pairs[index].target,
            "translations": {},
        }
        for index in indices
    ]
    for name, loaded in models.items():
        task, model = loaded.task, loaded.model.eval()
        predictor = task.predictor(task.graphs(model)).with_settings(generation=generation)
        for row, ids in zip(rows, predictor(batch)["tokens"].tolist()):
            row["translations"][name] = loaded.preprocess.decode(ids)
    return rows


def translations_table(rows: list[dict]) -> str:
    """Markdown: one line per pair, its source, one column per model, then the reference."""
    names = list(rows[0]["translations"]) if rows else []
    cells = [
        [str(row["id"]), row["source"], *(row["translations"][name] or "(empty)" for name in names), row["reference"]]
        for row in rows
    ]
    return markdown_table("Translations of validation sentences", ["pair", "source", *names, "reference"], cells)


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def translations_figure(rows: list[dict], dataset: Any):
    """Each image beside its source sentence, every model's translation and the reference."""
    import matplotlib.pyplot as plt

    names = list(rows[0]["translations"])
    height = max(1.5, 0.14 * (len(names) + 2) + 0.35)  # inches per pair: its text lines at 7 pt
    figure, axes = plt.subplots(
        len(rows), 2, figsize=(10.5, height * len(rows) + 0.5), squeeze=False, width_ratios=(1, 5), layout="constrained"
    )
    for row, (image_ax, text_ax) in zip(rows, axes):
        image_ax.imshow(shown_image(dataset, int(dataset.image_of[row["index"]])))
        image_ax.set_axis_off()
        image_ax.set_title(str(row["id"])[:28], fontsize=7)
        lines = [("source", row["source"])]
        lines += [(name, row["translations"][name] or "(empty)") for name in names]
        lines.append(("reference", row["reference"]))
        width = max(len(name) for name, _ in lines)
        text = "\n".join(f"{name:>{width}}: {_clipped(printable(sentence), 120)}" for name, sentence in lines)
        text_ax.text(0, 0.5, text, va="center", ha="left", fontsize=7, family="monospace")
        text_ax.set_axis_off()
    figure.suptitle(f"translations of {len(rows)} validation sentences (greedy), each with its image", fontsize=9)
    return figure


def _last(loaded: Any, group: str) -> str:
    return loaded.task.module_groups(loaded.model)[group][-1]


@torch.no_grad()
def source_attention(loaded: Any, batch: dict, target: torch.Tensor, targets: int, sources: int) -> np.ndarray:
    """``[heads, targets, sources]``: the last decoder layer's cross-attention over the source tokens,
    query ``t`` being the step that writes target token ``t + 1`` (the real tokens only)."""
    from amad.distill.capture import capture_attention

    model = loaded.model.eval()
    cross = _last(loaded, "decoder_cross_text")
    with capture_attention(model, [cross]) as capture:
        model(batch["pixels"], batch["source"], target)
    return capture.probs(cross)[0].float()[:, :targets, :sources].numpy()


def cross_attention_figures(teacher: Any, student: Any, name: str, dataset: Any, row: dict) -> dict[str, Any]:
    """``{"source": figure, "image": figure}`` (image only where the student reads it) for the
    teacher's translation of ``row``, teacher-forced through teacher and student."""
    from amad.report.figures import attention_figure

    batch = _batch(dataset, [row["index"]])
    translation = row["translations"]["teacher"]
    target = teacher.preprocess.tokenize([translation])
    source_ids = [i for i in batch["source"][0].tolist() if i != 0]
    target_ids = [i for i in target[0].tolist() if i != 0]
    source_pieces = teacher.preprocess.source.token_strings(source_ids)
    target_pieces = teacher.preprocess.token_strings(target_ids)
    # query t writes target token t + 1: label each query by the token it writes
    written = [printable(piece) for piece in target_pieces[1:]]
    maps = [source_attention(m, batch, target, len(written), len(source_ids)) for m in (teacher, student)]
    figures = {
        "source": attention_figure(
            name,
            _last(teacher, "decoder_cross_text"),
            _last(student, "decoder_cross_text"),
            [(f"pair {row['id']}", None, *maps, written, [printable(p) for p in source_pieces])],
            vision=False,
            what=(
                "cross-attention over the source sentence: each row is the step that writes that target token\n"
                f"(the teacher's translation, teacher-forced in both: {printable(translation)[:80]!r})"
            ),
        )
    }
    if "decoder_cross_image" in student.task.module_groups(student.model):
        positions = [p for p in chosen_words(target_pieces) if p >= 1]
        inputs = (batch["pixels"], batch["source"], target)
        teacher_maps, student_maps = (
            word_image_attention(m.model.eval(), _last(m, "decoder_cross_image"), inputs, positions)
            for m in (teacher, student)
        )
        shown = shown_image(dataset, int(dataset.image_of[row["index"]]))
        samples = [
            (f'"{printable(target_pieces[p])}"', shown, t, s) for p, t, s in zip(positions, teacher_maps, student_maps)
        ]  # fmt: skip
        figures["image"] = attention_figure(
            name,
            _last(teacher, "decoder_cross_image"),
            _last(student, "decoder_cross_image"),
            samples,
            vision=True,
            what=(
                "image cross-attention of the step that writes each word, over the image through the attentional "
                f"pooler\n(pair {row['id']}; the teacher's translation, teacher-forced in both: "
                f"{printable(translation)[:70]!r})"
            ),
        )
    return figures


def report_pages(teacher: Any, students: dict[str, Any], attention_models: list[str], dataset: Any, out: Path) -> str:
    """Write ``translations.png`` and ``cross_attention/<model>/{source,image}.png`` under ``out``;
    the translations table (markdown). Translations are greedy, as validation decodes (the report
    does not depend on ``evaluate``)."""
    from amad.generation.config import greedy
    from amad.report.figures import save

    models = {"teacher": teacher, **students}
    rows = example_translations(models, dataset, greedy(teacher.preprocess.context_length - 1))
    save(translations_figure(rows, dataset), out / "translations.png")
    if rows[0]["translations"]["teacher"].strip():
        for name in attention_models:
            folder = out / "cross_attention" / name
            folder.mkdir(parents=True, exist_ok=True)
            for kind, figure in cross_attention_figures(teacher, students[name], name, dataset, rows[0]).items():
                save(figure, folder / f"{kind}.png")
    return translations_table(rows)
