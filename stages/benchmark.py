"""DVC stage `benchmark`: exported models (params `export.models`, `benchmark`) ->
metrics/latency.json (the batch-1 speed-ups only, so that `dvc exp show` stays readable),
metrics/latency_full.json (every statistic, skipped backends with their reason) and
metrics/latency_plot.json (plot data: one row per model x backend x batch size)."""

from amad.atomic import write_json
from amad.bench.latency import generation_table, run_benchmark, speedups
from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage


def main(params: Params) -> None:
    report = run_benchmark(list(params.export.models), params.benchmark)
    ratios = speedups(report)
    rows = [
        {"model": model, "backend": backend, "batch_size": int(size), **stats}
        for model, backends in report["results"].items()
        for backend, batches in backends.items()
        if "skipped" not in batches
        for size, stats in batches.items()
        if "p50_ms" in stats  # a batch size the backend failed at has its reason instead
    ]
    generation = generation_table(report)  # whole generations (captioning): per caption, first token, per step
    write_json(paths.LATENCY_FULL, {**report, "speedups": ratios, **({"generation": generation} if generation else {})})
    write_json(paths.LATENCY_PLOT, rows)
    # the metric: each model's batch-1 speed-up over the teacher and, for whole generations, the
    # cache's over the uncached loop, on ONNX Runtime (ORT vs torch and int8 vs fp32 stay in the full file)
    metric = {
        k: v for k, v in ratios.items() if k.endswith("_onnxruntime_b1") and ("_vs_teacher_" in k or "_uncached_" in k)
    }
    write_json(paths.LATENCY, {"speedups": metric})
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    for row in generation:
        print(
            f"{row['model']}.{row['generation']} {row['backend']} b{row['batch_size']}: {row['ms_per_sample']:.2f} ms "
            f"per sample, first token {row['first_token_ms']} ms, {row['ms_per_step']} ms per step, "
            f"{row['tokens_per_s']:.0f} tokens/s"
        )


if __name__ == "__main__":
    run_stage(main)
