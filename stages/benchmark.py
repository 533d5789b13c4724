"""DVC stage `benchmark`: exported models (params `export.models`, `benchmark`) ->
metrics/latency.json (p50 per model / backend / batch size and the speed-ups: what `dvc exp show`
displays), metrics/latency_full.json (all statistics) and metrics/latency_plot.json (plot data)."""

from amad.atomic import write_json
from amad.benchmark import run_benchmark, speedups
from amad.config import Params
from amad.stage import run_stage


def main(params: Params) -> None:
    report = run_benchmark(list(params.export.models), params.benchmark)
    ratios = speedups(report)
    summary = {"speedups": ratios, "p50_ms": {}}
    rows = []
    for model, backends in report["results"].items():
        for backend, batches in backends.items():
            if "skipped" in batches:
                summary["p50_ms"].setdefault(model, {})[backend] = None
                continue
            summary["p50_ms"].setdefault(model, {})[backend] = {b: s["p50_ms"] for b, s in batches.items()}
            rows += [{"model": model, "backend": backend, "batch_size": int(b), **s} for b, s in batches.items()]
    write_json("metrics/latency_full.json", {**report, "speedups": ratios})
    write_json("metrics/latency_plot.json", rows)
    write_json("metrics/latency.json", summary)
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")


if __name__ == "__main__":
    run_stage(main)
