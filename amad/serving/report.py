"""``amad loadtest``: the load test of an export folder in both batching modes -> ``metrics/serving.json``.

Without ``--url`` a server is started for each mode in turn (Triton's dynamic batching on, then
off) on free loopback ports, and stopped after it; with ``--url`` the running server is measured
as it is configured (mode ``as_served``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from amad.atomic import write_json
from amad.serving.loadtest import load_test, validation_requests
from amad.serving.server import running_server, served_graphs

MODES = {"dynamic_batching": True, "no_batching": False}


def run_load_test(
    export_dir: Path,
    data_dir: Path,
    levels: list[int],
    duration: float,
    timeout: float,
    max_requests: int,
    url: str | None,
    out: Path,
    log=print,
) -> dict:
    requests = validation_requests(export_dir, data_dir)
    models = sorted(served_graphs(export_dir))
    results = {}
    if url is not None:
        results["as_served"] = load_test(
            url, export_dir, requests, levels, duration=duration, timeout=timeout, max_requests=max_requests, log=log
        )
    else:
        for mode, dynamic in MODES.items():
            log(f"{mode}: starting a server for {export_dir}")
            with running_server(export_dir, dynamic_batching=dynamic) as (served, _process):
                results[mode] = load_test(
                    served,
                    export_dir,
                    requests,
                    levels,
                    duration=duration,
                    timeout=timeout,
                    max_requests=max_requests,
                    log=log,
                )
    report = {
        "export": str(export_dir),
        "models": models,
        "request": f"one prediction (batch of one) of {len(requests)} validation samples in turn, through the task's predictor",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "settings": {"concurrency": levels, "duration_s": duration, "timeout_s": timeout, "max_requests": max_requests},
        "modes": results,
    }
    write_json(out, report)
    return report
