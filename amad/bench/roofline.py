"""How close the exported graphs come to the machine: achieved GFLOP/s at the largest batch against
the CPU's measured fp32 matrix-multiply peak, and the per-call overhead at batch 1.

The overhead is estimated as ``t(1) - t(B) / B``: the batch-1 latency minus the batch-1 share of
the largest batch's time (the part that batching amortises: dispatch, threading, small kernels).
"""

from __future__ import annotations

import time

import torch


def matmul_peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Best GFLOP/s of an fp32 ``size`` x ``size`` matrix product with torch's current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def graph_gflops(module: torch.nn.Module, example_inputs: tuple) -> float:
    """GFLOPs of one sample through ``module`` (``torch.utils.flop_counter``; inputs: a batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*example_inputs)
    return counter.get_total_flops() / 1e9


def roofline(stats: dict, gflops: float, peak: float) -> dict | None:
    """``stats``: one backend's ``{batch size: {"p50_ms"}}``; None without batch 1 and a larger batch
    (a batch size the backend failed at holds no ``p50_ms`` and does not count)."""
    sizes = sorted(int(size) for size, entry in stats.items() if "p50_ms" in entry)
    if 1 not in sizes or sizes[-1] == 1:
        return None
    largest = sizes[-1]
    t1, t_large = stats["1"]["p50_ms"], stats[str(largest)]["p50_ms"]
    achieved = gflops * largest / (t_large / 1e3)
    overhead = t1 - t_large / largest
    return {
        "gflops_per_sample": gflops,
        "batch": largest,
        "achieved_gflops": round(achieved, 2),
        "of_peak": round(achieved / peak, 4),
        # batch 1 minus a batch-``largest`` sample's share; below zero the two timings contradict each
        # other (a noisy run): not measured, never clamped
        "overhead_ms_b1": round(overhead, 4) if overhead >= 0 else None,
    }
