"""Reading a benchmark report (``metrics/latency_full.json``) without the model libraries."""

from __future__ import annotations


def primary_generation(latency: dict) -> str | None:
    """The whole generation that stands for a generative model's latency (captioning: ``caption``,
    with the cache): the report's first generation call that is no other's baseline; None: the task
    predicts in one call per graph."""
    calls = latency.get("generation_calls", {})
    return next((name for name, call in calls.items() if call.get("baseline_of") is None), None)


def _entries(latency: dict, model: str, backend: str, batch_size: int) -> dict[str, dict]:
    """``model``'s benchmark entries on ``backend`` at ``batch_size`` that make up its latency, by row:
    its primary generation's row (``<model>.caption``); else its one graph's row, or one per graph
    (rows ``<model>.<graph>``, e.g. a retrieval model's image and text encoders)."""
    results = latency.get("results", {})
    generation = primary_generation(latency)
    if generation is not None:
        names = [f"{model}.{generation}"]
    else:
        names = [name for name in results if name == model or name.startswith(f"{model}.")]
    return {name: results[name].get(backend, {}).get(str(batch_size), {}) for name in names if name in results}


def model_latency(latency: dict, model: str, backend: str, batch_size: int) -> float | None:
    """p50 ms of ``model`` on ``backend`` at ``batch_size`` (``latency``: the whole benchmark report):
    a generative model's whole generation of a batch; else its one graph's, or the sum over its graphs."""
    times = [entry.get("p50_ms") for entry in _entries(latency, model, backend, batch_size).values()]
    return sum(times) if times and None not in times else None


def noisy_rows(latency: dict, model: str, backend: str, batch_size: int) -> list[str]:
    """The rows of ``model`` whose timing on ``backend`` at ``batch_size`` the benchmark flagged as noisy."""
    return [name for name, entry in _entries(latency, model, backend, batch_size).items() if entry.get("noisy")]
