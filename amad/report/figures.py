"""The report's pictures, drawn with matplotlib (colour bars, labelled axes, titles that name the
model, layer and head):

* :func:`alignment_figure`: AMAD's alignment weights of every distilled layer (teacher head x
  student head, averaged over the validation set), values written in the cells.
* :func:`attention_figure`: teacher and student maps of one layer pair for a few validation
  samples; vision heads as the class token's attention over the patches, overlaid on the input
  image, other groups as query x key maps over the sample's real tokens.
* :func:`tradeoff_figure`: the primary metric against ONNX Runtime batch-1 latency, the Pareto
  front (no other model is both faster and better) marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display, whatever the environment says

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

DPI = 110


def save(figure: Figure, path) -> None:
    """Write ``figure`` as PNG and release it."""
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


def alignment_figure(model: str, layers: dict[str, np.ndarray]) -> Figure:
    """One panel per layer: ``[teacher heads, student heads]`` weights with their values and a colour bar."""
    count = len(layers)
    columns = min(count, 2)
    rows = math.ceil(count / columns)
    widest = max(w.shape[1] for w in layers.values())
    tallest = max(w.shape[0] for w in layers.values())
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * (2.6 + 0.7 * widest), rows * (1.4 + 0.45 * tallest)),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[count:]:
        ax.remove()
    for ax, (layer, weights) in zip(axes.flat, layers.items(), strict=False):
        uniform = 1.0 / weights.shape[1]  # every student head weighted alike: no alignment learnt
        norm = TwoSlopeNorm(vmin=0.0, vcenter=uniform, vmax=1.0)
        image = ax.imshow(weights, cmap="RdBu_r", norm=norm, aspect="auto")
        for (row, col), value in np.ndenumerate(weights):
            strong = abs(value - uniform) > 0.6 * max(uniform, 1 - uniform)
            ax.text(
                col, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if strong else "black"
            )
        ax.set_xticks(range(weights.shape[1]))
        ax.set_yticks(range(weights.shape[0]))
        ax.set_xlabel("student head")
        ax.set_ylabel("teacher head")
        ax.set_title(f"{model} · {layer}", fontsize=9)
        bar = figure.colorbar(image, ax=ax, label="alignment weight")
        bar.set_ticks([0.0, uniform, 1.0], labels=["0", f"uniform 1/{weights.shape[1]}", "1"])
    figure.suptitle(
        f"{model}: AMAD alignment weights (rows sum to 1, validation mean; white: uniform, red: above it)", fontsize=10
    )
    return figure


def patch_grid(keys: int) -> tuple[int, bool] | None:
    """``(side, has_class_token)`` where ``keys`` image tokens form a square grid (after a class
    token, or alone); None otherwise."""
    for has_class_token in (True, False):
        side = math.isqrt(keys - has_class_token)
        if side > 1 and side * side == keys - has_class_token:
            return side, has_class_token
    return None


def _image_attention(head: np.ndarray, side: int, has_class_token: bool) -> np.ndarray:
    """``[q, k]`` -> ``[side, side]``: the class token's attention over the patches (or, without a
    class token, the mean attention each patch receives)."""
    if has_class_token:
        return head[0, 1:].reshape(side, side)
    return head.mean(0).reshape(side, side)


def attention_figure(
    model: str,
    teacher_layer: str,
    student_layer: str,
    samples: Sequence[tuple],
    *,
    vision: bool,
    what: str | None = None,
) -> Figure:
    """Teacher (first row of each sample) and student (second) heads of one layer pair.

    ``samples``: ``(description, image [H, W, 3] in [0, 1] or None, teacher maps [Ht, q, k],
    student maps [Hs, q, k], query labels or None, key labels or None)`` (labels: the text piece of
    each query / key token). With ``vision`` and a square patch grid the maps are drawn over the
    image; otherwise as query x key maps, with the tokens' words on the axes where given. Teacher
    and student of one sample share one colour scale. ``what``: the title's account of the maps
    (default: the class token's attention over the patches, or query x key attention).
    """
    heads = max(max(sample[2].shape[0], sample[3].shape[0]) for sample in samples)
    grid = patch_grid(samples[0][2].shape[-1]) if vision else None
    size = 1.9 if grid else 2.2
    figure, axes = plt.subplots(
        2 * len(samples),
        heads,
        figsize=(heads * size + 1.2, 2 * len(samples) * size + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for index, (_, image, teacher_maps, student_maps, *labels) in enumerate(samples):
        query_labels, key_labels = [*labels, None, None][:2]
        pictures = {
            who: [_image_attention(h, *grid) for h in maps] if grid else list(maps)
            for who, maps in (("teacher", teacher_maps), ("student", student_maps))
        }
        high = max(float(m.max()) for shown in pictures.values() for m in shown)  # one scale for both rows
        for offset, (who, shown) in enumerate(pictures.items()):
            row = axes[2 * index + offset]
            for head, ax in enumerate(row):
                if head >= len(shown):
                    ax.axis("off")
                    continue
                if grid and image is not None:
                    ax.imshow(image, extent=(0, 1, 0, 1))
                    picture = ax.imshow(
                        shown[head], cmap="inferno", alpha=0.6, vmin=0, vmax=high, extent=(0, 1, 0, 1),
                        interpolation="nearest",
                    )  # fmt: skip
                    ax.set_xticks([])
                    ax.set_yticks([])
                else:
                    picture = ax.imshow(shown[head], cmap="viridis", vmin=0, vmax=high, aspect="auto")
                    ax.set_xlabel("patch column" if grid else "key token", fontsize=7)
                    if head == 0:
                        ax.set_ylabel("patch row" if grid else "query token", fontsize=7)
                    _token_axis(ax.xaxis, None if grid else key_labels, rotation=90)
                    _token_axis(ax.yaxis, None if grid else query_labels if head == 0 else None, rotation=0)
                    ax.tick_params(labelsize=6)
                where = f"sample {index + 1} · " if head == 0 else ""
                ax.set_title(f"{where}{who} head {head}", fontsize=7)
            figure.colorbar(picture, ax=list(row), fraction=0.02, pad=0.01, label="attention")
    what = what or ("class-token attention over the patches" if grid else "query x key attention")
    names = "; ".join(f"sample {i + 1}: {description[:70]}" for i, (description, *_) in enumerate(samples))
    figure.suptitle(f"{model}: {teacher_layer} (teacher) vs {student_layer} (student), {what}\n{names}", fontsize=8)
    return figure


def _token_axis(axis, labels: list[str] | None, rotation: int) -> None:
    """Whole-token ticks: each token's text where given and few enough to read, else integers."""
    from matplotlib.ticker import MaxNLocator

    if labels is not None and len(labels) <= 40:
        axis.set_ticks(range(len(labels)), labels, rotation=rotation, fontsize=5)
    else:
        axis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, score) that no other point beats on both (lower latency,
    higher score), by increasing latency."""
    front = []
    for index, (latency, score) in enumerate(points):
        dominated = any(
            other_latency <= latency and other_score >= score and (other_latency, other_score) != (latency, score)
            for other_latency, other_score in points
        )
        if not dominated:
            front.append(index)
    return sorted(front, key=lambda i: points[i][0])


def tradeoff_figure(rows: Sequence[dict], metric: str, machine: str, deployed: str | None = None) -> Figure:
    """``rows``: ``{"model", "accuracy" (the metric), "latency_ms"}`` of the benchmarked models;
    ``deployed`` (the deploy stage's choice) is ringed."""
    figure, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    points = [(r["latency_ms"], r["accuracy"]) for r in rows]
    front = pareto_front(points)
    for index, row in enumerate(rows):
        teacher = row["model"] == "teacher"
        ax.scatter(
            row["latency_ms"],
            row["accuracy"],
            marker="*" if teacher else "o",
            s=140 if teacher else 40,
            color="tab:red" if index in front else "tab:gray",
            zorder=3,
        )
        ax.annotate(row["model"], (row["latency_ms"], row["accuracy"]), textcoords="offset points", xytext=(5, 4))
        if row["model"] == deployed:
            ax.scatter(
                row["latency_ms"],
                row["accuracy"],
                s=260,
                facecolors="none",
                edgecolors="tab:blue",
                linewidths=1.8,
                zorder=4,
                label=f"deployed: {deployed}",
            )
    ax.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        color="tab:red",
        lw=1,
        label="Pareto front (red: no model both faster and better)",
    )
    ax.margins(0.15)
    ax.set_xlabel("ONNX Runtime latency, batch 1, p50 (ms)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs latency ({machine})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure
