"""Reading a benchmark report (``metrics/latency_full.json``) without the model libraries."""

from __future__ import annotations


def _entries(results: dict, model: str, backend: str, batch_size: int) -> dict[str, dict]:
    """``model``'s benchmark entries on ``backend`` at ``batch_size`` by row: its one graph's row, or
    one per graph (rows ``<model>.<graph>``, e.g. a retrieval model's image and text encoders)."""
    return {
        name: row.get(backend, {}).get(str(batch_size), {})
        for name, row in results.items()
        if name == model or name.startswith(f"{model}.")
    }


def model_latency(results: dict, model: str, backend: str, batch_size: int) -> float | None:
    """p50 ms of ``model`` on ``backend`` at ``batch_size``: its one graph's, or the sum over its graphs."""
    times = [entry.get("p50_ms") for entry in _entries(results, model, backend, batch_size).values()]
    return sum(times) if times and None not in times else None


def noisy_rows(results: dict, model: str, backend: str, batch_size: int) -> list[str]:
    """The rows of ``model`` whose timing on ``backend`` at ``batch_size`` the benchmark flagged as noisy."""
    return [name for name, entry in _entries(results, model, backend, batch_size).items() if entry.get("noisy")]
