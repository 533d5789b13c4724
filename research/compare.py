"""A fair comparison of the distillation methods: each method's loss weight tuned on validation,
then test scores over several seeds.

1. **Grid, on validation** (one seed, ``distill.seed`` = the first seed): for every attention-loss
   weight in ``--weights``, ``dvc exp run -S distill.weights.attention=W -S distill.methods=[the
   attention methods] distill``; each method keeps the weight with the best validation score
   (its models' last-epoch ``val/<metric>`` in ``logs/<model>/metrics.json``), averaged over the
   students. AMAD's temperature is then tuned the same way at AMAD's weight (``--temperatures``).
   Methods without an attention term (``none``, ``logit``) have nothing to tune.
2. **Seeds, on test**: every method at its chosen settings, ``distill.seed`` = 0 .. ``--seeds``-1
   (``dvc exp run ... evaluate``; methods sharing settings share a run): mean ± std of the test
   metric, its gap to the teacher, and the student's latency (ONNX Runtime, batch 1) and speed-up
   from the workspace's ``metrics/latency_full.json`` where that student shape was benchmarked
   (``dvc repro`` first; the latency depends on the shape, not the method).

Every run is a DVC experiment (``dvc exp show``); ``params.yaml`` is put back as it was.
Writes ``studies/compare.json`` and ``studies/compare.md`` (outside ``reports/``, which the
``report`` stage owns)::

    python -m research.compare --seeds 3 [--weights 0.1,0.3,1,3] [--temperatures 0.25,1,4]
        [--set distill.init.strategy=inherit ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from amad.atomic import atomic_file, write_json
from amad.bench.results import model_latency
from amad.config.params import load_params
from amad.contracts.method import METHODS
from amad.pipeline import paths
from research.experiments import PARAMS, read_json, run_experiment, workspace_restored


def validation_score(model: str, metric: str, logs: Path = paths.LOGS) -> float:
    """The last epoch's validation ``metric`` of ``model`` (its dvclive ``metrics.json``)."""
    return float(read_json(logs / model / "metrics.json")["val"][metric])


def training_seconds(model: str, logs: Path = paths.LOGS) -> float | None:
    """``model``'s training time over all its epochs, validation excluded (the ``train_seconds``
    series in its dvclive folder); None for a log written before amad recorded it."""
    series = logs / model / "plots" / "metrics" / "train_seconds.tsv"
    if not series.exists():
        return None
    with series.open(newline="") as stream:
        return sum(float(row["train_seconds"]) for row in csv.DictReader(stream, delimiter="\t"))


def best(scores: dict[float, float]) -> float:
    """The setting with the highest score; ties go to the smaller setting."""
    return max(sorted(scores), key=lambda setting: scores[setting])


def _listing(methods: list[str]) -> str:
    return f"distill.methods=[{','.join(methods)}]"


def tune(
    methods: list[str],
    students: list[str],
    setting: str,
    values: list[float],
    base: list[str],
    score: Callable[[str], float],
    run: Callable[[list[str], str], None],
) -> dict[str, dict[float, float]]:
    """``{method: {value: mean validation score over students}}`` with ``setting=value``, one run per value."""
    grid: dict[str, dict[float, float]] = {method: {} for method in methods}
    for value in values:
        run([*base, f"{setting}={value}", _listing(methods)], "distill")
        for method in methods:
            grid[method][value] = statistics.fmean(score(f"{student}-{method}") for student in students)
    return grid


def settings_groups(choices: dict[str, dict[str, float]]) -> dict[tuple, list[str]]:
    """Methods grouped by identical chosen settings (one run per group and seed)."""
    groups: dict[tuple, list[str]] = {}
    for method, chosen in choices.items():
        groups.setdefault(tuple(sorted(chosen.items())), []).append(method)
    return groups


def image_drop(breakdown: dict, model: str) -> float | None:
    """The test metric's drop with the images shuffled across inputs (translation's adversarial
    evaluation, in ``metrics/breakdown.json``); None where the task does not measure it."""
    return breakdown.get(model, {}).get("shuffled_images", {}).get("image_drop")


def summarise(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "runs": values,
    }


def student_latency(latency: dict, student: str) -> dict | None:
    """ONNX Runtime batch-1 p50 of any benchmarked ``<student>-*`` model and its speed-up over the teacher."""
    results = latency.get("results", {})
    teacher_ms = model_latency(latency, "teacher", "onnxruntime", 1)
    models = sorted({name.split(".")[0] for name in results if name.startswith(f"{student}-")})
    for model in models:
        ms = model_latency(latency, model, "onnxruntime", 1)
        if ms is not None and teacher_ms is not None:
            return {"model": model, "ort_b1_ms": ms, "teacher_ort_b1_ms": teacher_ms, "speedup": teacher_ms / ms}
    return None


def format_report(result: dict) -> str:
    metric, teacher = result["metric"], result["teacher"]
    drops = result.get("image_drop")
    lines = [
        f"# Method comparison ({metric}; weights tuned on validation, test over {result['seeds']} seeds)",
        "",
        f"Overrides: {', '.join(result['overrides']) or 'none'}. Teacher (test): "
        f"{teacher['mean']:.4f} ± {teacher['std']:.4f}.",
        "",
        f"| student | method | chosen settings | val {metric} at choice | test {metric} (mean ± std) | gap to teacher "
        f"{'| image drop (shuffled images) ' if drops else ''}| training s | ORT b1 ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if drops else ""),
    ]
    if drops:
        teacher_drop = result["teacher_image_drop"]
        lines[2] += f" Teacher's image drop: {teacher_drop['mean']:.4f} ± {teacher_drop['std']:.4f}."
    for student, rows in result["table"].items():
        speed = result["latency"].get(student)
        ms = f"{speed['ort_b1_ms']:.3f}" if speed else "n/a"
        ratio = f"{speed['speedup']:.2f}x" if speed else "n/a"
        for method, row in rows.items():
            chosen = ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in result["choices"][method].items()) or "-"
            val = result["validation"].get(method)
            took = result.get("training_seconds", {}).get(student, {}).get(method)
            drop = drops.get(student, {}).get(method) if drops else None
            drop_cell = (f"{drop['mean']:.4f} ± {drop['std']:.4f} | " if drop else "n/a | ") if drops else ""
            lines.append(
                f"| {student} | {method} | {chosen} | {'-' if val is None else f'{val:.4f}'} | "
                f"{row['mean']:.4f} ± {row['std']:.4f} | {row['mean'] - teacher['mean']:+.4f} | {drop_cell}"
                f"{'n/a' if took is None else f'{took:.0f}'} | {ms} | {ratio} |"
            )
    if "wall_seconds" in result:
        lines += [
            "",
            f"Wall time of the comparison: {result['wall_seconds'] / 60:.1f} min. Training s: one "
            "student's training passes, mean over seeds (validation excluded).",
        ]
    lines += [
        "",
        "Validation grid (mean over students):",
        "",
        "| method | setting | value | val |",
        "|---|---|---|---|",
    ]
    for method, settings in result["grid"].items():
        for setting, values in settings.items():
            for value, score in values.items():
                lines.append(f"| {method} | {setting} | {value:g} | {score:.4f} |")
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace, run: Callable[[list[str], str], None] = run_experiment) -> dict:
    # the compare runs never export: keep export.models valid whichever methods a run lists
    quiet = ["export.models=[teacher]", "deploy.model=null"]
    params = load_params(PARAMS, [*quiet, *args.set])  # as the runs see it: --set distill.methods=[...] picks
    metric = params.task_plugin().primary_metric
    students = list(params.students)
    methods = list(params.distill.methods)
    tuned = [m for m in methods if METHODS.get(m, "distill.methods").needs.layers]
    latency_path = paths.LATENCY_FULL
    latency = read_json(latency_path) if latency_path.exists() else {}

    def score(model: str) -> float:
        return validation_score(model, metric)

    base = ["distill.seed=0", *quiet, *args.set]
    grid: dict[str, dict[str, dict[float, float]]] = {m: {} for m in tuned}
    choices: dict[str, dict[str, float]] = {m: {} for m in methods}
    validation: dict[str, float] = {}
    if tuned:
        weights = tune(tuned, students, "distill.weights.attention", args.weights, base, score, run)
        for method in tuned:
            grid[method]["distill.weights.attention"] = weights[method]
            choices[method]["distill.weights.attention"] = best(weights[method])
            validation[method] = weights[method][choices[method]["distill.weights.attention"]]
    if "amad" in tuned and args.temperatures:
        weight = choices["amad"]["distill.weights.attention"]
        default = params.distill.settings["amad"].temperature
        temperatures = {default: validation["amad"]}
        others = [t for t in args.temperatures if t != default]
        setting = "distill.amad.temperature"
        temperatures.update(
            tune(["amad"], students, setting, others, [*base, f"distill.weights.attention={weight}"], score, run)[
                "amad"
            ]
        )
        grid["amad"][setting] = dict(sorted(temperatures.items()))
        choices["amad"][setting] = best(temperatures)
        validation["amad"] = temperatures[choices["amad"][setting]]

    tests: dict[str, dict[str, list[float]]] = {s: {m: [] for m in methods} for s in students}
    seconds: dict[str, dict[str, list[float]]] = {s: {m: [] for m in methods} for s in students}
    drops: dict[str, dict[str, list[float]]] = {s: {m: [] for m in methods} for s in students}
    teacher: list[float] = []
    teacher_drops: list[float] = []
    for seed in range(args.seeds):
        for chosen, group in settings_groups(choices).items():
            overrides = [f"distill.seed={seed}", *quiet, *args.set, *(f"{k}={v}" for k, v in chosen), _listing(group)]
            run(overrides, "evaluate")
            metrics = read_json(paths.EVAL)
            breakdown = read_json(paths.BREAKDOWN) if paths.BREAKDOWN.exists() else {}
            for student in students:
                for method in group:
                    tests[student][method].append(metrics[f"{student}-{method}"][metric])
                    drop = image_drop(breakdown, f"{student}-{method}")
                    if drop is not None:
                        drops[student][method].append(drop)
                    took = training_seconds(f"{student}-{method}")
                    if took is not None:
                        seconds[student][method].append(took)
        teacher.append(metrics["teacher"][metric])
        if image_drop(breakdown, "teacher") is not None:
            teacher_drops.append(image_drop(breakdown, "teacher"))
    return {
        "metric": metric,
        "seeds": args.seeds,
        "overrides": args.set,
        "teacher": summarise(teacher),
        "grid": grid,
        "choices": choices,
        "validation": validation,
        "table": {s: {m: summarise(v) for m, v in rows.items()} for s, rows in tests.items()},
        "training_seconds": {
            s: {m: statistics.fmean(v) if v else None for m, v in rows.items()} for s, rows in seconds.items()
        },
        "latency": {s: student_latency(latency, s) for s in students},
        **(
            {
                "image_drop": {s: {m: summarise(v) for m, v in rows.items() if v} for s, rows in drops.items()},
                "teacher_image_drop": summarise(teacher_drops),
            }
            if teacher_drops
            else {}
        ),
    }


def _numbers(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"values must be > 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--weights", type=_numbers, default=[0.1, 0.3, 1.0, 3.0], help="attention-loss weights")
    parser.add_argument("--temperatures", type=_numbers, default=[0.25, 1.0, 4.0], help="AMAD temperatures")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override")
    parser.add_argument("--out", default="studies/compare")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        sys.exit("error: --seeds must be >= 1")
    if not args.weights:
        sys.exit("error: --weights needs at least one value")
    started = time.perf_counter()
    with workspace_restored():
        result = compare(args)
    result["wall_seconds"] = time.perf_counter() - started
    write_json(f"{args.out}.json", result)
    report = format_report(result)
    with atomic_file(Path(f"{args.out}.md"), "w") as stream:
        stream.write(report)
    print(report)


if __name__ == "__main__":
    main()
