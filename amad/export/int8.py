"""Which int8 graphs a model ships (``export.int8``): ONNX Runtime dynamic or static quantisation,
none, or ``auto``: both built, and the faster one (batch 1, interleaved with fp32) kept among those
whose validation metric is within ``export.int8_max_drop`` of the fp32 graphs' — even where it is
no faster than fp32 (the reason states its speed relative to fp32; the benchmark times both). A
graph static quantisation fails on leaves ``auto`` with dynamic (``static_failed`` says why).

The kept graphs are ``<graph>.int8.onnx``; ``export.json``'s ``int8`` entry records the mode,
the reason, and for ``auto`` every candidate's validation metric and latency.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.bench.timing import interleaved_ms
from amad.export.onnx_runtime import OnnxModel
from amad.export.quantize import quantize_dynamic_int8, quantize_static_int8

TIMING_ROUNDS = 40


def _build(staging: Path, graphs: list[str], kind: str, calibration: Callable, suffix: str) -> None:
    feeds = calibration() if kind == "static" else {}
    for graph in graphs:
        source, target = staging / f"{graph}.onnx", staging / f"{graph}{suffix}"
        if kind == "dynamic":
            quantize_dynamic_int8(source, target)
        else:
            quantize_static_int8(source, target, feeds[graph])


def batch_one_ms(candidates: dict[str, dict[str, OnnxModel]], inputs: dict[str, tuple]) -> dict[str, float]:
    """Median batch-1 latency (ms, summed over the graphs) of each candidate, all timed in interleaved rounds."""
    cases = {
        (candidate, graph): functools.partial(model, *inputs[graph])
        for candidate, models in candidates.items()
        for graph, model in models.items()
    }
    times = interleaved_ms(cases, warmup=2, repeats=TIMING_ROUNDS)
    return {
        candidate: sum(statistics.median(times[(candidate, graph)]) for graph in models)
        for candidate, models in candidates.items()
    }


def build_int8(
    staging: Path,
    graphs: list[str],
    mode: str,
    *,
    calibration: Callable[[], dict[str, list[dict]]],
    score: Callable[[dict[str, OnnxModel]], float],
    inputs: dict[str, tuple],
    max_drop: float,
) -> dict[str, Any]:
    """Write ``<graph>.int8.onnx`` for every graph as ``mode`` says; returns the ``int8`` record.

    Args:
        calibration: returns, per graph, the feeds static quantisation calibrates on (called only
            when static quantisation runs).
        score: the validation metric of a ``{graph: model}`` set (higher is better).
        inputs: per graph, one batch-1 input for the latency comparison.
        max_drop: the largest validation-metric drop below fp32 that ``auto`` accepts.
    """
    if mode == "none":
        return {"mode": "none", "reason": "export.int8: none"}
    if mode != "auto":
        _build(staging, graphs, mode, calibration, ".int8.onnx")
        return {"mode": mode, "reason": f"export.int8: {mode}"}

    _build(staging, graphs, "dynamic", calibration, ".int8-dynamic.onnx")
    suffixes = {"fp32": ".onnx", "dynamic": ".int8-dynamic.onnx"}
    static_error = None
    try:
        _build(staging, graphs, "static", calibration, ".int8-static.onnx")
        suffixes["static"] = ".int8-static.onnx"
    except Exception as error:
        static_error = f"{type(error).__name__}: {error}"
    # sessions take turns: threads left spinning by one would steal the cores of the next
    models = {
        name: {g: OnnxModel(staging / f"{g}{suffix}", idle_spinning=False) for g in graphs}
        for name, suffix in suffixes.items()
    }
    latency = batch_one_ms(models, inputs)
    metric = {name: score(candidate) for name, candidate in models.items()}
    del models  # sessions hold the files open on some platforms
    candidates = {
        kind: {"val_metric": metric[kind], "val_drop": metric["fp32"] - metric[kind], "b1_ms": latency[kind]}
        for kind in suffixes
        if kind != "fp32"
    }
    record: dict[str, Any] = {
        "mode": "auto",
        "fp32": {"val_metric": metric["fp32"], "b1_ms": latency["fp32"]},
        "candidates": candidates,
    }
    if static_error is not None:
        record["static_failed"] = static_error
    chosen, record["reason"] = _choose(candidates, latency["fp32"], max_drop)
    record["chosen"] = chosen
    for kind in candidates:
        for graph in graphs:
            path = staging / f"{graph}.int8-{kind}.onnx"
            if kind == chosen:
                path.replace(staging / f"{graph}.int8.onnx")
            else:
                path.unlink()
    return record


def _choose(candidates: dict[str, dict], fp32_ms: float, max_drop: float) -> tuple[str | None, str]:
    """The fastest int8 candidate at batch 1 among those within the validation budget, and why."""
    within = [kind for kind, c in candidates.items() if c["val_drop"] <= max_drop]
    if not within:
        drops = ", ".join(f"{kind} {c['val_drop']:.4f}" for kind, c in candidates.items())
        return None, f"no int8 graph kept: validation metric drops {drops} exceed export.int8_max_drop {max_drop}"
    chosen = min(within, key=lambda kind: candidates[kind]["b1_ms"])
    c = candidates[chosen]
    return chosen, (
        f"{chosen}: the faster at batch 1 ({c['b1_ms']:.3f} ms; fp32 {fp32_ms:.3f} ms, "
        f"{fp32_ms / c['b1_ms']:.2f}x fp32's speed) of {', '.join(within)} within the validation budget "
        f"(drop {c['val_drop']:.4f} <= {max_drop})"
    )
