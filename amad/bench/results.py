"""Reading a benchmark report (``metrics/latency_full.json``) without the model libraries."""

from __future__ import annotations


def model_latency(results: dict, model: str, backend: str, batch_size: int) -> float | None:
    """p50 ms of ``model`` on ``backend`` at ``batch_size``: its one graph's, or the sum over its graphs
    (benchmark rows ``<model>.<graph>``, e.g. a retrieval model's image and text encoders)."""
    rows = [row for name, row in results.items() if name == model or name.startswith(f"{model}.")]
    times = [row.get(backend, {}).get(str(batch_size), {}).get("p50_ms") for row in rows]
    return sum(times) if times and None not in times else None


def noisy_rows(results: dict, model: str, backend: str, batch_size: int) -> list[str]:
    """The rows of ``model`` whose timing on ``backend`` at ``batch_size`` the benchmark flagged as noisy."""
    return [
        name
        for name, row in results.items()
        if (name == model or name.startswith(f"{model}."))
        and row.get(backend, {}).get(str(batch_size), {}).get("noisy", False)
    ]
