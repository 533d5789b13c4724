"""The captioning report's own pages: validation images with every model's caption, and the decoder's
cross-attention of chosen words over the image, teacher heads beside student heads.

* ``reports/captions.png``: each validation image beside the teacher's greedy caption, every
  student's and the first reference; ``summary.md`` gets the same as
  a table.
* ``reports/cross_attention/<model>.png``: the teacher's caption of one validation image,
  teacher-forced through teacher and student; for each chosen word, the last decoder layer's
  cross-attention of the step that writes it. The decoder attends to the attentional pooler's
  outputs, not to patches, so a head's map over the image is its attention over the pooler's
  tokens times the pooler's (head-mean) attention over the patches.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

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


def _pixels(dataset: Any, images: list[int]) -> torch.Tensor:
    return torch.stack([dataset.pixels(image) for image in images])


@torch.no_grad()
def example_captions(models: dict[str, Any], dataset: Any, generation: Any, count: int = EXAMPLES) -> list[dict]:
    """``{"index", "id", "references", "captions": {model: caption}}`` for ``count`` validation images
    spread over the split, each model (a LoadedModel, teacher first) decoding with ``generation``."""
    images = spread(count, len(dataset.records))
    pixels = _pixels(dataset, images)
    rows = [
        {"index": image, "id": dataset.records[image].id, "references": list(dataset.records[image].captions)}
        for image in images
    ]
    for row in rows:
        row["captions"] = {}
    for name, loaded in models.items():
        task, model = loaded.task, loaded.model.eval()
        predictor = task.predictor(task.graphs(model)).with_settings(generation=generation)
        tokens = predictor({"pixels": pixels})["tokens"]
        for row, ids in zip(rows, tokens.tolist()):
            row["captions"][name] = loaded.preprocess.decode(ids)
    return rows


def captions_table(rows: list[dict]) -> str:
    """Markdown: one line per image, one column per model, then the first reference."""
    names = list(rows[0]["captions"]) if rows else []
    cells = [
        [str(row["id"]), *(row["captions"][name] or "(empty)" for name in names), row["references"][0]] for row in rows
    ]
    return markdown_table("Captions of validation images", ["image", *names, "first reference"], cells)


def captions_figure(rows: list[dict], dataset: Any):
    """Each image beside every model's caption and its first reference."""
    import matplotlib.pyplot as plt

    names = list(rows[0]["captions"])
    height = max(1.5, 0.14 * (len(names) + 1) + 0.35)  # inches per image: its text lines at 7 pt
    figure, axes = plt.subplots(
        len(rows), 2, figsize=(9.5, height * len(rows) + 0.5), squeeze=False, width_ratios=(1, 4), layout="constrained"
    )
    for row, (image_ax, text_ax) in zip(rows, axes):
        image_ax.imshow(shown_image(dataset, row["index"]))
        image_ax.set_axis_off()
        image_ax.set_title(str(row["id"])[:28], fontsize=7)
        lines = [(name, row["captions"][name] or "(empty)") for name in names]
        lines.append(("reference", row["references"][0]))
        text = "\n".join(
            textwrap.shorten(printable(f"{name}: {caption}"), 110, placeholder=" ...") for name, caption in lines
        )  # fmt: skip
        text_ax.text(0, 0.5, text, va="center", ha="left", fontsize=7, family="monospace", wrap=True)
        text_ax.set_axis_off()
    figure.suptitle(
        f"captions of {len(rows)} validation images (test-time decoding; reference: the first of each image's)",
        fontsize=9,
    )
    return figure


def _last_cross(loaded: Any) -> str:
    """The last decoder layer's cross-attention module of a loaded model."""
    return loaded.task.module_groups(loaded.model)["decoder_cross"][-1]


def cross_attention_figure(teacher: Any, student: Any, student_name: str, dataset: Any, caption: str, image: int = 0):
    """Teacher and student cross-attention over the image for the chosen words of ``caption`` (the
    teacher's caption of validation image ``image``), both teacher-forced on it."""
    from amad.report.figures import attention_figure

    pixels = _pixels(dataset, [image])
    tokens = teacher.preprocess.tokenize([caption])
    real = [i for i in tokens[0].tolist() if i != 0]
    pieces = teacher.preprocess.token_strings(real)
    positions = [p for p in chosen_words(pieces) if p >= 1]
    teacher_maps, student_maps = (
        word_image_attention(loaded.model.eval(), _last_cross(loaded), (pixels, tokens), positions)
        for loaded in (teacher, student)
    )
    shown = shown_image(dataset, image)
    samples = [
        (f'"{printable(pieces[p])}"', shown, t, s) for p, t, s in zip(positions, teacher_maps, student_maps)
    ]  # fmt: skip
    return attention_figure(
        student_name,
        _last_cross(teacher),
        _last_cross(student),
        samples,
        vision=True,
        what=(
            "cross-attention of the step that writes each word, over the image through the attentional pooler\n"
            f"(image {dataset.records[image].id}; the teacher's caption, teacher-forced in both: {printable(caption)[:80]!r})"
        ),
    )


def report_pages(teacher: Any, students: dict[str, Any], attention_models: list[str], dataset: Any, out: Path) -> str:
    """Write ``captions.png`` and ``cross_attention/<model>.png`` under ``out``; the captions table
    (markdown). Captions are greedy, as validation decodes (the report does not depend on ``evaluate``)."""
    from amad.generation.config import greedy
    from amad.report.figures import save

    rows = example_captions({"teacher": teacher, **students}, dataset, greedy(teacher.preprocess.context_length - 1))
    (out / "cross_attention").mkdir(parents=True, exist_ok=True)
    save(captions_figure(rows, dataset), out / "captions.png")
    caption = rows[0]["captions"]["teacher"]
    if caption.strip():
        for name in attention_models:
            figure = cross_attention_figure(teacher, students[name], name, dataset, caption, rows[0]["index"])
            save(figure, out / "cross_attention" / f"{name}.png")
    return captions_table(rows)
