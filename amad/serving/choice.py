"""Which model to deploy: one rule, applied once after the benchmark by the ``deploy`` stage.

The rule (``deploy.model: auto``): among the exported students, take the best primary metric
(``metrics/eval.json``); of the students within ``deploy.tolerance`` of it, deploy the fastest on
ONNX Runtime at batch 1 (``metrics/latency_full.json``; a multi-graph model's graphs summed, a
generative model's whole generation); a tie in latency goes to the higher metric. With no benchmarked student, the teacher. The report,
``deployed/`` and the README's commands all name the model written to ``deployed/choice.json``.
"""

from __future__ import annotations

from amad.bench.results import model_latency, noisy_rows
from amad.errors import AmadError
from amad.serving.config import AUTO, DeployConfig

RULE = (
    "the fastest exported student (ONNX Runtime, batch 1) whose {metric} is within {tolerance:g} "
    "of the best exported student's"
)


def candidates(eval_metrics: dict, latency: dict, metric: str, exported: list[str]) -> list[dict]:
    """One row per exported model: its metric, batch-1 ONNX Runtime latency and whether that was noisy."""
    rows = []
    for name in exported:
        if name not in eval_metrics:
            raise AmadError(f"metrics/eval.json has no {name!r} (exported but not evaluated): run dvc repro evaluate")
        rows.append(
            {
                "model": name,
                metric: eval_metrics[name][metric],
                "latency_ms": model_latency(latency, name, "onnxruntime", 1),
                "noisy": bool(noisy_rows(latency, name, "onnxruntime", 1)),
            }
        )
    return rows


def choose(eval_metrics: dict, latency: dict, metric: str, exported: list[str], config: DeployConfig) -> dict:
    """``{"model", "rule", "metric", "tolerance", "candidates", "reason"}``; ``model`` is None when
    ``deploy.model`` is null."""
    rows = candidates(eval_metrics, latency, metric, exported)
    choice = {"metric": metric, "tolerance": config.tolerance, "candidates": rows}
    if config.model is None:
        return {**choice, "model": None, "rule": "none", "reason": "deploy.model is null: nothing is deployed"}
    if config.model != AUTO:
        return {**choice, "model": config.model, "rule": "named", "reason": f"deploy.model names {config.model}"}
    students = [r for r in rows if r["model"] != "teacher" and r["latency_ms"] is not None]
    if not students:
        return {**choice, "model": "teacher", "rule": "auto", "reason": "no exported student was benchmarked"}
    best = max(r[metric] for r in students)
    eligible = [r for r in students if r[metric] >= best - config.tolerance - 1e-12]
    chosen = min(eligible, key=lambda r: (r["latency_ms"], -r[metric]))
    reason = (
        RULE.format(metric=metric, tolerance=config.tolerance)
        + f": {chosen[metric]:.4f} (best {best:.4f}) at {chosen['latency_ms']:.3f} ms"
    )
    if chosen["noisy"]:
        reason += " (its latency was noisy: see the report)"
    return {**choice, "model": chosen["model"], "rule": "auto", "reason": reason}
