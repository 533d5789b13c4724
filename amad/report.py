"""The ``report`` stage's work: one comparison table and the pictures behind it.

* ``reports/summary.md``: per model heads, params, GFLOPs, accuracy (torch / ONNX / int8), p50
  latency per backend and batch size, speed-up and accuracy change vs the teacher, and the best
  student for the accuracy / latency trade-off.
* ``reports/accuracy_latency.json``: scatter data (DVC plot).
* ``reports/alignment/<model>/<layer>.png``: AMAD alignment weights, teacher head x student head,
  averaged over the validation set.
* ``reports/attention/<model>/<layer>.png``: teacher vs student attention maps for one validation sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from amad.attention import capture_attention
from amad.models import load_model
from amad.models.io import read_model_spec

CELL = 24  # pixels per heat-map cell


def heat_map(values: np.ndarray, *, row_label: str, col_label: str, title: str, cell: int = CELL) -> Image.Image:
    """A labelled white-to-red heat map; the colour spans the array's own [min, max], printed on it."""
    rows, cols = values.shape
    margin_left, margin_top = 40, 36
    low, high = float(values.min()), float(values.max())
    image = Image.new("RGB", (max(margin_left + cols * cell + 8, 200), margin_top + rows * cell + 34), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title, fill="black")
    draw.text((2, margin_top + rows * cell + 18), f"white {low:.3g} .. red {high:.3g}", fill="black")
    draw.text((margin_left, 16), f"{col_label} ->", fill="black")
    draw.text((2, margin_top + rows * cell + 4), f"{row_label} (rows)", fill="black")
    span = (high - low) or 1.0
    for r in range(rows):
        draw.text((4, margin_top + r * cell + cell // 3), str(r), fill="black")
        for c in range(cols):
            level = (float(values[r, c]) - low) / span
            color = (255, int(255 * (1 - level)), int(255 * (1 - level)))
            box = (
                margin_left + c * cell,
                margin_top + r * cell,
                margin_left + (c + 1) * cell - 1,
                margin_top + (r + 1) * cell - 1,
            )
            draw.rectangle(box, fill=color, outline=(200, 200, 200))
    return image


def side_by_side(images: list[Image.Image]) -> Image.Image:
    width = sum(i.width for i in images) + 8 * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(i.height for i in images)), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width + 8
    return canvas


def _safe(name: str) -> str:
    return name.replace(".", "_")


def alignment_pictures(artefact: Path, out: Path) -> list[Path]:
    """One heat map per distilled layer from an alignment artefact (teacher head x student head)."""
    written = []
    model_dir = artefact.parent
    for layer, weights in load_file(artefact).items():
        path = out / f"{_safe(layer)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        heat_map(
            weights.numpy(), row_label="teacher head", col_label="student head", title=f"{model_dir.name} {layer}"
        ).save(path)
        written.append(path)
    return written


def attention_pictures(teacher_dir: Path, student_dir: Path, data_dir: Path, out: Path, sample: int = 0) -> list[Path]:
    """Teacher vs student head maps of each distilled layer for one validation sample (rows: its real
    query tokens, columns: its real key tokens)."""
    teacher, student = load_model(teacher_dir), load_model(student_dir)
    task = student.task
    group_of = {m: g for g, modules in task.module_groups(student.model).items() for m in modules}
    pairs = [(t, s, group_of[s]) for t, s, *_ in student.extra.get("layer_pairs", [])]  # older folders: no group
    dataset = task.dataset(data_dir, "val", student.preprocess, student.state)
    batch = torch.utils.data.default_collate([dataset[sample]])
    inputs = task.model_inputs(batch)
    with (
        torch.no_grad(),
        capture_attention(teacher.model, [t for t, _, _ in pairs]) as t_cap,
        capture_attention(student.model, [s for _, s, _ in pairs]) as s_cap,
    ):
        teacher.model(*inputs)
        student.model(*inputs)
    written = []
    for teacher_layer, student_layer, group in pairs:
        query_mask, key_mask = task.attention_masks(group, batch)
        maps = []
        for label, capture, layer in (("teacher", t_cap, teacher_layer), ("student", s_cap, student_layer)):
            probs = capture.probs(layer)[0]  # (H, q, k)
            if query_mask is not None:
                probs = probs[:, query_mask[0]]
            if key_mask is not None:
                probs = probs[:, :, key_mask[0]]
            maps += [
                heat_map(head.numpy(), row_label="query", col_label="key", cell=6, title=f"{label} h{index}")
                for index, head in enumerate(probs)
            ]
        path = out / f"{_safe(student_layer)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        side_by_side(maps).save(path)
        written.append(path)
    (out / "sample.txt").write_text(task.describe(dataset, sample) + "\n")
    return written


def _fmt(value: float | None, digits: int = 4, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _heads(model_dir: Path) -> str:
    """Heads per attention group, e.g. ``8/8/8/8`` (vision / text / fusion self / fusion cross for VQA)."""
    task, config = read_model_spec(model_dir)
    shapes = task.group_shapes(config, model_dir.name)
    return "/".join(str(shape.heads) for shape in shapes.values())


def best_student(rows: list[dict], tolerance: float = 0.02) -> dict | None:
    """The fastest benchmarked student (ONNX Runtime, batch 1) within ``tolerance`` of the most
    accurate benchmarked student."""
    students = [r for r in rows if r["model"] != "teacher" and r.get("latency_ms") is not None]
    if not students:
        return None
    top = max(r["accuracy"] for r in students)
    return min((r for r in students if r["accuracy"] >= top - tolerance), key=lambda r: r["latency_ms"])


def model_latency(results: dict, model: str, backend: str, batch_size: int) -> float | None:
    """p50 ms of ``model`` on ``backend`` at ``batch_size``: its one graph's, or the sum over its graphs
    (benchmark rows ``<model>.<graph>``, e.g. a retrieval model's image and text encoders)."""
    rows = [row for name, row in results.items() if name == model or name.startswith(f"{model}.")]
    times = [row.get(backend, {}).get(str(batch_size), {}).get("p50_ms") for row in rows]
    return sum(times) if times and None not in times else None


def summary(eval_metrics: dict, latency: dict, exported: Path, models_dir: Path, metric: str) -> tuple[str, list[dict]]:
    """Markdown table and the ``metric`` (the task's primary metric) / latency rows (for the scatter plot)."""
    results = latency.get("results", {})
    batch_sizes = latency.get("settings", {}).get("batch_sizes", [])
    backends = sorted({b for m in results.values() for b, v in m.items() if "skipped" not in v})
    teacher = eval_metrics["teacher"]
    teacher_ms = model_latency(results, "teacher", "onnxruntime", 1)
    header = ["model", "heads per group", "params (M)", "GFLOPs", f"{metric} torch", "ONNX", "int8"]
    header += [f"{b} b{s} p50 ms" for b in backends for s in batch_sizes]
    header += ["speed-up vs teacher (ORT b1)", f"{metric} change vs teacher"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for name, metrics in eval_metrics.items():
        export_path = exported / name / "export.json"
        accuracy = json.loads(export_path.read_text())["accuracy"] if export_path.exists() else {}
        ort_ms = model_latency(results, name, "onnxruntime", 1)
        cells = [
            name,
            _heads(models_dir / name),
            f"{metrics['params'] / 1e6:.2f}",
            f"{metrics['gflops']:.4f}",
            f"{metrics[metric]:.4f}",
            _fmt(accuracy.get("onnx_fp32")),
            _fmt(accuracy.get("onnx_int8")),
        ]
        for backend in backends:
            for size in batch_sizes:
                cells.append(_fmt(model_latency(results, name, backend, size), 2))
        speedup = teacher_ms / ort_ms if teacher_ms and ort_ms else None
        cells += [_fmt(speedup, 2, "x"), f"{(metrics[metric] - teacher[metric]) * 100:+.1f} pt"]
        lines.append("| " + " | ".join(cells) + " |")
        rows.append({"model": name, "accuracy": metrics[metric], "latency_ms": ort_ms})
    best = best_student(rows)
    text = "# amad report\n\n" + "\n".join(lines) + "\n\n"
    skipped = {f"{b}: {v['skipped']}" for m in results.values() for b, v in m.items() if "skipped" in v}
    if skipped:
        text += "Backends not measured here: " + "; ".join(sorted(skipped)) + ".\n\n"
    if best:
        text += (
            f"**Best student for the {metric} / latency trade-off:** `{best['model']}` — the fastest "
            f"benchmarked student (ONNX Runtime, batch 1) within 2 points of the best benchmarked one.\n"
        )
    top = max((r for r in rows if r["model"] != "teacher"), key=lambda r: r["accuracy"], default=None)
    if top is not None and top["latency_ms"] is None:
        text += (
            f"The best student by {metric}, `{top['model']}` ({top['accuracy']:.4f}), was not benchmarked: "
            f"add it to `export.models` to measure it.\n"
        )
    graphs = sorted({name.partition(".")[2] for name in results} - {""})
    if graphs:
        text += (
            f"Latencies are the sums over the exported graphs ({', '.join(graphs)}: one input each); "
            "per graph in metrics/latency_full.json.\n"
        )
    machine = latency.get("machine", {})
    text += (
        f"\nLatency measured on {machine.get('cpu')} with {machine.get('threads')} threads "
        f"(CUDA: {machine.get('cuda')}), all models interleaved in one run.\n"
    )
    return text, [r for r in rows if r["latency_ms"] is not None]
