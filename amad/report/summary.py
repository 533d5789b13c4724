"""The ``report`` stage's work: a table a person reads at a glance, and the pictures behind it.

* ``reports/summary.md``: first per model heads, params, the primary metric, its gap to the
  teacher, ONNX Runtime batch-1 latency, speed-up and the int8 file's metric; then the full
  latency matrix (every backend x batch size) and GFLOPs.
* ``reports/accuracy_latency.json`` (DVC scatter plot) and ``reports/accuracy_latency.png``
  (the Pareto front marked).
* ``reports/alignment/<model>.png``: AMAD alignment weights of every distilled layer.
* ``reports/attention/<model>/<layer>.png``: teacher vs student attention of each distilled layer
  pair for a few validation samples (named in ``reports/attention_samples/<model>.txt``).

The pictures are drawn by :mod:`amad.report.figures`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from amad.bench.results import model_latency, noisy_rows, primary_generation
from amad.distill.capture import capture_attention
from amad.models import load_model
from amad.models.io import read_model_spec
from amad.report.figures import alignment_figure, attention_figure, save, tradeoff_figure

NOISY = " †"  # a timing whose p90 / p50 stayed above benchmark.max_spread after its re-timings
SAMPLES = (0.0, 0.5)  # where in the validation split the attention pictures' samples are (spread over images)


def _safe(name: str) -> str:
    return name.replace(".", "_")


def alignment_pictures(artefact: Path, out: Path) -> Path:
    """``out`` (a PNG): the alignment weights of every layer in an alignment artefact."""
    layers = {layer: weights.float().numpy() for layer, weights in load_file(artefact).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save(alignment_figure(artefact.parent.name, layers), out)
    return out


def _image(batch: dict, preprocess) -> np.ndarray | None:
    """The batch's first image as ``[H, W, 3]`` in [0, 1] (normalisation undone), if it has one."""
    if "pixels" not in batch:
        return None
    pixels = batch["pixels"][0].float().numpy().transpose(1, 2, 0)
    return np.clip(pixels * np.asarray(preprocess.std) + np.asarray(preprocess.mean), 0, 1)


def attention_pictures(
    teacher_dir: Path, student_dir: Path, data_dir: Path, out: Path, spread: tuple[float, ...] = SAMPLES
) -> list[Path]:
    """One picture per distilled layer pair: teacher vs student heads on the validation samples at
    the ``spread`` fractions of the split (query rows and key columns: the sample's real tokens)."""
    teacher, student = load_model(teacher_dir), load_model(student_dir)
    task = student.task
    group_of = {m: g for g, modules in task.module_groups(student.model).items() for m in modules}
    pairs = [(t, s, group_of[s]) for t, s, *_ in student.extra.get("layer_pairs", [])]  # older folders: no group
    dataset = task.dataset(data_dir, "val", student.preprocess, student.state)
    samples = tuple(dict.fromkeys(round(f * (len(dataset) - 1)) for f in spread))
    drawn: dict[str, list] = {s: [] for _, s, _ in pairs}
    for sample in samples:
        batch = torch.utils.data.default_collate([dataset[sample]])
        inputs = task.model_inputs(batch)
        with (
            torch.no_grad(),
            capture_attention(teacher.model, [t for t, _, _ in pairs]) as t_cap,
            capture_attention(student.model, [s for _, s, _ in pairs]) as s_cap,
        ):
            teacher.model(*inputs)
            student.model(*inputs)
        image = _image(batch, student.preprocess)
        for teacher_layer, student_layer, group in pairs:
            query_mask, key_mask = task.attention_masks(group, batch)
            query_labels, key_labels = task.token_labels(group, batch, student.preprocess)
            maps = []
            for capture, layer in ((t_cap, teacher_layer), (s_cap, student_layer)):
                probs = capture.probs(layer)[0]  # (H, q, k)
                if query_mask is not None:
                    probs = probs[:, query_mask[0]]
                if key_mask is not None:
                    probs = probs[:, :, key_mask[0]]
                maps.append(probs.float().numpy())
            labels = (_kept(query_labels, query_mask), _kept(key_labels, key_mask))
            drawn[student_layer].append((task.describe(dataset, sample), image, *maps, *labels))
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for teacher_layer, student_layer, group in pairs:
        path = out / f"{_safe(student_layer)}.png"
        figure = attention_figure(
            student_dir.name, teacher_layer, student_layer, drawn[student_layer], vision=group.startswith("vision")
        )
        save(figure, path)
        written.append(path)
    # outside the plots folders (reports/attention/...): DVC loads every file of a plots folder as a plot
    samples_file = out.parent.parent / "attention_samples" / f"{out.name}.txt"
    samples_file.parent.mkdir(parents=True, exist_ok=True)
    samples_file.write_text("".join(f"sample {i + 1}: {task.describe(dataset, s)}\n" for i, s in enumerate(samples)))
    return written


def _kept(labels: list[str] | None, mask) -> list[str] | None:
    """``labels`` of the tokens ``mask`` (``[1, n]`` bool, or None: all) keeps."""
    if labels is None or mask is None:
        return labels
    return [label for label, keep in zip(labels, mask[0].tolist()) if keep]


def tradeoff_picture(rows: list[dict], metric: str, machine: str, out: Path, deployed: str | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    save(tradeoff_figure(rows, metric, machine, deployed), out)
    return out


def _fmt(value: float | None, digits: int = 4, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _heads(model_dir: Path) -> str:
    """Heads per attention group, e.g. ``8/8/8/8`` (vision / text / fusion self / fusion cross for VQA)."""
    task, config = read_model_spec(model_dir)
    shapes = task.group_shapes(config, model_dir.name)
    return "/".join(str(shape.heads) for shape in shapes.values())


def summary(
    eval_metrics: dict, latency: dict, exported: Path, models_dir: Path, metric: str, choice: dict
) -> tuple[str, list[dict]]:
    """Markdown (the short table, then the full latency matrix) and the ``metric`` (the task's
    primary metric) / latency rows (for the scatter plot); ``choice``: ``deployed/choice.json``."""
    results = latency.get("results", {})
    short_lines, full_lines, rows = _tables(eval_metrics, latency, exported, models_dir, metric)
    text = "# amad report\n\n" + "\n".join(short_lines) + "\n\n"
    text += (
        "Heads: per attention group. Speed-up: the teacher's ONNX Runtime batch-1 latency over the model's. "
        "int8 vs fp32: the int8 graphs' test metric minus the fp32 graphs' (the export's own evaluation).\n"
    )
    text += _deployed_lines(choice, rows, metric)
    if any(r["latency_ms"] is not None for r in rows):  # the stage draws the picture from these rows
        text += "\n![accuracy vs latency](accuracy_latency.png)\n"
    text += "\n## Latency matrix (p50 ms) and cost\n\n" + "\n".join(full_lines) + "\n\n"
    text += (
        f"{metric} torch: stage evaluate (its `evaluate` settings); export, ONNX, int8, fp16: the export's test "
        "evaluation, the task's default one (captioning: greedy captions), torch and graphs alike.\n\n"
    )
    skipped = {f"{b}: {v['skipped']}" for m in results.values() for b, v in m.items() if "skipped" in v}
    skipped |= {  # a GPU backend that failed on one model at a batch size
        f"{b} on {m}: {entry['skipped']}"
        for m, row in results.items()
        for b, v in row.items()
        if "skipped" not in v
        for entry in v.values()
        if "skipped" in entry
    }
    if skipped:
        text += "Backends not measured here: " + "; ".join(sorted(skipped)) + ".\n\n"
    generation = primary_generation(latency)
    graphs = sorted({name.partition(".")[2] for name in results} - {"", *latency.get("generation_calls", {})})
    if generation is not None:
        text += (
            f"Latencies are of whole greedy generations (`{generation}`: the graphs {', '.join(graphs)} in amad's "
            "decode loop, one batch); per graph in metrics/latency_full.json.\n"
        )
    elif graphs:
        text += (
            f"Latencies are the sums over the exported graphs ({', '.join(graphs)}: one input each); "
            "per graph in metrics/latency_full.json.\n"
        )
    text += _noise_line(latency)
    text += f"\nLatency measured on {machine_line(latency)}, all models interleaved in one run.\n"
    text += machine_use(latency)
    text += generation_tables(latency)
    return text, [r for r in rows if r["latency_ms"] is not None]


def generation_tables(latency: dict) -> str:
    """Whole generations (``latency_full.json``'s ``generation``: per sample, first token, per later
    step, tokens/s, the cache's speed-up) and the decode caches' bytes, expected against measured."""
    rows = latency.get("generation", [])
    if not rows:
        return ""
    baselines = sorted({key for row in rows for key in row if key.startswith("vs_")})
    head = ["model", "generation", "backend", "batch", "ms per sample", "first token ms", "ms per step", "tokens/s"]
    head += [f"{key.replace('_', ' ')} (x)" for key in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], row["generation"], row["backend"], str(row["batch_size"])]
        cells += [_fmt(row["ms_per_sample"], 3), _fmt(row["first_token_ms"], 3), _fmt(row["ms_per_step"], 3)]
        cells += [f"{row['tokens_per_s']:.0f}", *(_fmt(row.get(key), 2) for key in baselines)]
        lines.append("| " + " | ".join(cells) + " |")
    text = (
        "\n## Whole generations (greedy, every output as long as the longest: the same work for every model)\n\n"
        + "\n".join(lines)
        + "\n\nFirst token: the first graph's call (it returns the first step's logits), per batch; per step: the"
        " rest of the batch's time over its later decoder steps; tokens/s: the batch's generated tokens (end tokens"
        " included) over its time.\n"
    )
    cache = latency.get("decode_cache", {})
    if cache:
        lines = [
            "| model | self-attention bytes per token (expected) | measured | cross-attention bytes per output "
            "(expected) | measured | match |",
            "|---|---|---|---|---|---|",
        ]
        for model, entry in cache.items():
            expected, measured = entry["expected"], entry["measured"]
            lines.append(
                f"| {model} | {expected['self_attention_per_token']} | {_fmt(measured['self_attention_per_token'], 0)} "
                f"| {expected['cross_attention']} | {_fmt(measured['cross_attention'], 0)} "
                f"| {'yes' if entry['matches'] else '**no**'} |"
            )
        text += (
            "\n### Key/value cache (fp32, per output: a caption, a translation)\n\n"
            + "\n".join(lines)
            + "\n\nExpected (from the model config): 2 x self-attention layers x heads x head width x 4 bytes per"
            " token; 2 x decoder layers x memory tokens x width x 4 once per input for the cross-attention (captioning:"
            " the image tokens; translation: the source tokens, padding included, and the image tokens); measured:"
            " read from the cache tensors a torch generation ended with.\n"
        )
    return text


def _tables(
    eval_metrics: dict, latency: dict, exported: Path, models_dir: Path, metric: str
) -> tuple[list[str], list[str], list[dict]]:
    """The short table's and the latency matrix's markdown lines, and one metric / latency row per model."""
    results = latency.get("results", {})
    batch_sizes = latency.get("settings", {}).get("batch_sizes", [])
    backends = sorted({b for m in results.values() for b, v in m.items() if "skipped" not in v})
    teacher = eval_metrics["teacher"]
    teacher_ms = model_latency(latency, "teacher", "onnxruntime", 1)
    short = ["model", "heads", "params (M)", metric, "vs teacher", "ORT b1 ms", "speed-up", "int8 vs fp32"]
    full = ["model", "GFLOPs", f"{metric} torch", "export: torch", "ONNX", "int8", "fp16 (ORT CPU)"]
    full += [f"{b} b{s} p50 ms" for b in backends for s in batch_sizes]
    short_lines = ["| " + " | ".join(short) + " |", "|" + "---|" * len(short)]
    full_lines = ["| " + " | ".join(full) + " |", "|" + "---|" * len(full)]
    rows = []
    for name, metrics in eval_metrics.items():
        export_path = exported / name / "export.json"
        accuracy = json.loads(export_path.read_text())["accuracy"] if export_path.exists() else {}
        ort_ms = model_latency(latency, name, "onnxruntime", 1)
        speedup = teacher_ms / ort_ms if teacher_ms and ort_ms else None
        noisy = NOISY if noisy_rows(latency, name, "onnxruntime", 1) else ""
        noisy_ratio = NOISY if noisy or noisy_rows(latency, "teacher", "onnxruntime", 1) else ""
        gap = "—" if name == "teacher" else f"{(metrics[metric] - teacher[metric]) * 100:+.1f} pt"
        cells = [
            name,
            _heads(models_dir / name),
            f"{metrics['params'] / 1e6:.2f}",
            f"{metrics[metric]:.4f}",
            gap,
            _fmt(ort_ms, 3) + noisy,
            _fmt(speedup, 2, "x") + noisy_ratio,
            _int8_change(accuracy),
        ]
        short_lines.append("| " + " | ".join(cells) + " |")
        cells = [
            name,
            f"{metrics['gflops']:.4f}",
            f"{metrics[metric]:.4f}",
            _fmt(accuracy.get("torch_fp32")),
            _fmt(accuracy.get("onnx_fp32")),
            _fmt(accuracy.get("onnx_int8")),
            _fmt(accuracy.get("onnx_fp16")),
        ]
        cells += [
            _fmt(model_latency(latency, name, b, size), 2) + (NOISY if noisy_rows(latency, name, b, size) else "")
            for b in backends
            for size in batch_sizes
        ]
        full_lines.append("| " + " | ".join(cells) + " |")
        rows.append({"model": name, "accuracy": metrics[metric], "latency_ms": ort_ms})
    return short_lines, full_lines, rows


def _int8_change(accuracy: dict) -> str:
    """The int8 graphs' test metric minus the fp32 graphs' (points), both from the export's evaluation."""
    if accuracy.get("onnx_int8") is None or accuracy.get("onnx_fp32") is None:
        return "—"
    return f"{(accuracy['onnx_int8'] - accuracy['onnx_fp32']) * 100:+.1f} pt"


def _deployed_lines(choice: dict, rows: list[dict], metric: str) -> str:
    """The deployed model and why (stage ``deploy``), and a warning when the most accurate student
    was not benchmarked."""
    if choice["model"] is None:
        text = f"\n**Deployed:** nothing ({choice['reason']}).\n"
    else:
        text = (
            f"\n**Deployed:** `{choice['model']}` in `deployed/` — {choice['reason']} "
            "(`deploy` in params.yaml; `deployed/choice.json`).\n"
        )
    top = max((r for r in rows if r["model"] != "teacher"), key=lambda r: r["accuracy"], default=None)
    if top is not None and top["latency_ms"] is None:
        text += (
            f"The best student by {metric}, `{top['model']}` ({top['accuracy']:.4f}), was not benchmarked: "
            f"add it to `export.models` to measure it.\n"
        )
    return text


def _noise_line(latency: dict) -> str:
    """Which timings the report cannot vouch for (``noisy`` in metrics/latency_full.json)."""
    noisy = [
        f"{model} {backend} b{size} (p90/p50 {entry['spread']:.2f})"
        for model, row in latency.get("results", {}).items()
        for backend, batches in row.items()
        if "skipped" not in batches
        for size, entry in batches.items()
        if entry.get("noisy")
    ]
    if not noisy:
        return ""
    limit = latency.get("settings", {}).get("max_spread")
    return (
        f"\n**Not trustworthy ({NOISY.strip()}):** {len(noisy)} timings stayed noisy (p90 / p50 above {limit}) after "
        f"their re-timings — the machine was busy; re-run `dvc repro -f benchmark` on a quiet machine: "
        + "; ".join(noisy)
        + ".\n"
    )


def training_lines(training: dict) -> str:
    """The models whose training reached its epoch cap still improving (``metrics/training.json``)."""
    improving = [name for name, end in training.items() if end.get("still_improving")]
    if not improving:
        return ""
    return (
        f"\n**Still improving at the epoch cap:** {', '.join(improving)} — the validation score peaked in the "
        "last epoch, at least 0.5 point above three epochs before; more epochs (`train.epochs`, "
        "`distill.train.epochs`) would likely raise them.\n"
    )


def machine_line(latency: dict) -> str:
    machine = latency.get("machine", {})
    return f"{machine.get('cpu')} with {machine.get('threads')} threads (CUDA: {machine.get('cuda')})"


def machine_use(latency: dict) -> str:
    """How close each graph (ONNX Runtime fp32) comes to the measured matmul peak, as markdown."""
    rows = {name: row for name, row in latency.get("roofline", {}).items() if row}
    if not rows:
        return ""
    peak = latency.get("machine", {}).get("matmul_peak_gflops")
    lines = [
        f"\n## Machine use (ONNX Runtime fp32; fp32 matmul peak {peak} GFLOP/s)\n",
        "| graph | GFLOP per sample | batch | achieved GFLOP/s | of peak | per-call overhead at batch 1 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['gflops_per_sample']:.4f} | {row['batch']} | {row['achieved_gflops']:.1f} | "
            f"{row['of_peak']:.1%} | {_fmt(row['overhead_ms_b1'], 3) if row['overhead_ms_b1'] is not None else 'not measured (negative: noisy timings)'} |"
        )
    return "\n".join(lines) + "\n"


def serving_table(serving: dict) -> str:
    """``metrics/serving.json`` (stage ``loadtest``) as markdown: one row per batching mode and level."""
    if "skipped" in serving:
        return f"\n## Serving under load\n\nNot measured: {serving['skipped']}.\n"
    lines = [
        f"\n## Serving under load ({', '.join(serving['models'])}, Triton on the loopback address)\n",
        "| batching | concurrency | requests/s | p50 ms | p90 ms | p99 ms | failed / requests |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, levels in serving["modes"].items():
        for level, row in levels.items():
            lines.append(
                f"| {mode.replace('_', ' ')} | {level} | {row['throughput_rps']:.1f} | {_fmt(row['p50_ms'], 2)} | "
                f"{_fmt(row['p90_ms'], 2)} | {_fmt(row['p99_ms'], 2)} | {row['failed']} / {row['requests']} |"
            )
    settings = serving["settings"]
    lines.append(
        f"\n{settings['duration_s']:g} s per level, {settings['timeout_s']:g} s request timeout; a request is one "
        "validation sample's whole prediction (the task's predictor over the served graphs), one HTTP client "
        "per thread.\n"
    )
    return "\n".join(lines)
