"""Latency of every exported model x backend x batch size, measured interleaved.

Each round runs every (model, backend) pair of one runtime in turn, so a noisy machine slows
all of them alike and ratios between them hold; the runtimes (eager torch, the CUDA backends, ONNX
Runtime fp32 and int8 together, TensorRT) are timed one after another. A call of one runtime
right after another's ran slower for several calls (on a 2-core CPU the teacher's ONNX Runtime
batch-1 call after torch's: 2.0 ms, then 1.8, 1.6, ... 1.1 by the 12th call; no such decay after
another ONNX Runtime session's), a switch that a server running one model does not pay. Within a
round a pair runs ``burst`` back-to-back calls, all but the first timed (the first refills the
caches the previous pair used). ONNX Runtime's worker threads spin within a call, as a server's
do, and stop at its return (left spinning, they took a core from the next session's call).
Rounds repeat until every pair has ``repeats`` timed calls. Reported per pair and batch size:
p50 / p90 / p99 latency, throughput (samples/s) and peak extra memory of one call; backends that
cannot run here (no CUDA, no TensorRT, no int8 file) are recorded as ``{"skipped": reason}``, and
a GPU backend whose first call at a batch size fails (a graph that cannot be captured, say) as
``{"<batch size>": {"skipped": reason}}``. The CUDA backends
(:mod:`amad.bench.cuda`) are timed by CUDA events, the others by the host clock.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from amad.bench import memory
from amad.bench.config import BenchmarkConfig
from amad.bench.cuda import CUDA_BACKENDS, CudaRunner
from amad.bench.roofline import graph_gflops, matmul_peak_gflops, roofline
from amad.export import tensorrt
from amad.export.onnx_runtime import OnnxModel
from amad.models import load_model
from amad.pipeline import paths

Runner = Callable[..., object]  # (*inputs) -> outputs
# backends that may fail on a model that runs elsewhere (graph capture, compilation, engines): their
# failure at a batch size is recorded as {"skipped": reason} there; any other backend's is an error
MAY_FAIL = (*CUDA_BACKENDS, "tensorrt")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; float kernels, so results, can differ between models)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.partition(':')[2].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def row_name(model: str, graph: str) -> str:
    """A benchmark row: the model's name, with ``.<graph>`` for tasks exported as several graphs."""
    return model if graph == "model" else f"{model}.{graph}"


def make_runner(backend: str, model_dir: Path, export_dir: Path, graph: str, threads: int) -> Runner | str:
    """A callable running one batch through ``graph``, or the reason the backend is skipped."""
    if backend == "torch":
        loaded = load_model(model_dir)
        module = loaded.task.graphs(loaded.model.eval())[graph]

        def run_torch(*inputs):
            with torch.inference_mode():
                return module(*inputs)

        return run_torch
    if backend in ("onnxruntime", "onnxruntime_int8"):
        path = export_dir / (f"{graph}.onnx" if backend == "onnxruntime" else f"{graph}.int8.onnx")
        if not path.exists():
            return f"{path} not found (export.int8 is none, or auto kept no int8 graph: see export.json)"
        # sessions take turns: threads left spinning by one would steal the cores of the next
        session = OnnxModel(path, threads=threads, idle_spinning=False)
        return lambda *inputs: session.run(*(x.numpy() for x in inputs))
    if backend in CUDA_BACKENDS:
        if not torch.cuda.is_available():
            return "no CUDA device"
        loaded = load_model(model_dir)
        return CudaRunner(loaded.task.graphs(loaded.model.eval())[graph], backend)
    if backend == "tensorrt":
        reason = tensorrt.unavailable_reason()
        if reason is not None:
            return reason
        plan = export_dir / f"{graph}.plan"
        if not plan.exists():
            return f"{plan} not found (the export stage could not build it)"
        spec = model_specs(model_dir)[graph]
        return tensorrt.TensorRTModel(plan, spec.input_names, spec.output_names, spec.metadata)
    raise ValueError(f"unknown backend {backend!r}")


def backend_graphs(backend: str, model_dir: Path, export_dir: Path, names, threads: int) -> dict | str:
    """A model's graphs on one backend for a whole-generation call (torch modules, ONNX Runtime
    sessions fp32 or int8), or the reason the backend does not time whole generations."""
    if backend == "torch":
        loaded = load_model(model_dir)
        return loaded.task.graphs(loaded.model.eval())
    if backend in ("onnxruntime", "onnxruntime_int8"):
        suffix = ".onnx" if backend == "onnxruntime" else ".int8.onnx"
        files = {name: export_dir / f"{name}{suffix}" for name in names}
        missing = [str(path) for path in files.values() if not path.exists()]
        if missing:
            return f"{', '.join(missing)} not found (export.int8 is none, or auto kept no int8 graph: see export.json)"
        return {name: OnnxModel(path, threads=threads, idle_spinning=False) for name, path in files.items()}
    return (
        f"whole generations are timed on torch and ONNX Runtime only; {backend} times each graph "
        "(a CUDA-graph decode loop with a static cache is not built yet)"
    )


def generation_runner(call, graphs: dict, backend: str) -> Runner:
    """``call`` (a :class:`~amad.contracts.graph.GenerationCall`) built over ``graphs``, taking torch inputs."""
    run = call.build(graphs)
    if backend == "torch":

        def run_torch(*inputs):
            with torch.inference_mode():
                return run(*inputs)

        return run_torch
    return lambda *inputs: run(*(x.numpy() for x in inputs))


def _peak_mib(runner: Runner, inputs: tuple[torch.Tensor, ...], backend: str) -> float | None:
    if isinstance(runner, CudaRunner):
        return runner.peak_mib(*inputs)
    if backend == "tensorrt":
        return None  # TensorRT allocates outside torch's allocator and the process heap
    return memory.peak_extra_mib(lambda: runner(*inputs))


def runtime_of(backend: str) -> str:
    """The runtime a backend runs on (its pairs are timed in the same rounds)."""
    if backend in CUDA_BACKENDS:
        return "cuda"
    return "onnxruntime" if backend.startswith("onnxruntime") else backend


def time_interleaved(
    runners: dict[tuple[str, str], Runner], inputs: dict[tuple[str, str], tuple], config: BenchmarkConfig
) -> dict[tuple[str, str], list[float]]:
    """Seconds per timed call of each runner on its ``inputs``: per runtime, warm-up rounds, then
    interleaved rounds of bursts."""
    by_runtime: dict[str, list[tuple[str, str]]] = {}
    for key in runners:
        by_runtime.setdefault(runtime_of(key[1]), []).append(key)
    untimed = 1 if config.burst > 1 else 0
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for keys in by_runtime.values():
        for _ in range(config.warmup):
            for key in keys:
                runners[key](*inputs[key])
        for _ in range(math.ceil(config.repeats / (config.burst - untimed))):
            for key in keys:
                runner = runners[key]
                for call in range(config.burst):
                    if isinstance(runner, CudaRunner):
                        seconds = runner.timed(*inputs[key])
                    else:
                        start = time.perf_counter()
                        runner(*inputs[key])
                        seconds = time.perf_counter() - start
                    if call >= untimed:
                        timings[key].append(seconds)
    return timings


def run_benchmark(
    models: list[str],
    config: BenchmarkConfig,
    *,
    data_dir: Path = paths.PREPARED,
    models_dir: Path = paths.MODELS,
    exported_dir: Path = paths.EXPORTED,
    log=print,
) -> dict:
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    loaded = load_model(models_dir / models[0])
    # each model's own specs: a graph's inputs can be another graph's outputs (captioning's cache)
    specs = {name: model_specs(models_dir / name) for name in models}
    calls = loaded.task.generation_calls()
    runners, graph_of, results = _runners(
        models, list(specs[models[0]]), calls, config, models_dir, exported_dir, threads
    )
    dataset = loaded.task.dataset(data_dir, "val", loaded.preprocess, loaded.state)
    largest = max(config.batch_sizes)
    batch = torch.utils.data.default_collate([dataset[i % len(dataset)] for i in range(largest)])
    samples = {(name, graph): spec.batch_inputs(batch) for name in models for graph, spec in specs[name].items()}

    def first_rows(row: str, batch_size: int) -> tuple:
        name, graph = graph_of[row]
        return specs[name][graph].first_rows(samples[name, graph], batch_size)

    for batch_size in config.batch_sizes:
        inputs = {key: first_rows(key[0], batch_size) for key in runners}
        peaks, firsts = _first_calls(runners, inputs, batch_size, results, log)
        timings, retimed = _steady_timings(runners, inputs, config, log, batch_size)
        for (name, backend), times in timings.items():
            stats = _statistics(times, batch_size, peaks[name, backend], config.max_spread)
            if name.partition(".")[2] in calls:  # a whole generation: its tokens and steps too
                stats.update(_generation_statistics(firsts[name, backend], times, batch_size))
            results[name].setdefault(backend, {})[str(batch_size)] = {**stats, "retimed": retimed[name, backend]}
        log(
            f"batch {batch_size}: "
            + ", ".join(f"{n}/{b} {results[n][b][str(batch_size)]['p50_ms']:.2f}ms" for n, b in timings)
        )
    peak = matmul_peak_gflops()
    return {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": threads,
            "matmul_peak_gflops": round(peak, 1),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__,
        },
        "settings": {
            "warmup": config.warmup,
            "repeats": config.repeats,
            "burst": config.burst,
            "batch_sizes": list(config.batch_sizes),
            "max_spread": config.max_spread,
            "retries": config.retries,
        },
        "results": results,
        # ONNX Runtime fp32 against the matmul peak (amad.bench.roofline)
        "roofline": _machine_use(models, specs, results, models_dir, peak),
        **(
            {
                "generation_calls": {
                    name: {"inputs_of": call.inputs_of, "baseline_of": call.baseline_of} for name, call in calls.items()
                },
                "decode_cache": _decode_cache(models, results, models_dir),
            }
            if calls
            else {}
        ),
    }


def _generation_statistics(first: dict, times: list[float], batch_size: int) -> dict:
    """A whole generation's tokens and steps (deterministic: the first call's), tokens/s at the median
    time, and the cache sizes its run read from its tensors."""
    median = statistics.median(times)
    return {
        **{key: round(float(value), 2) for key, value in first.items()},
        "ms_per_sample": round(1e3 * median / batch_size, 4),
        "tokens_per_s": round(first["tokens"] / median, 2),
    }


def _decode_cache(models: list[str], results: dict, models_dir: Path) -> dict:
    """Per model: the cache bytes the task expects from the model config beside those its torch
    generation read from the cache tensors, and whether they match."""
    report = {}
    for name in models:
        loaded = load_model(models_dir / name)
        expected = loaded.task.decode_cache_bytes(loaded.model.config, loaded.state)
        runs = [
            stats
            for row, backends in results.items()
            if row.partition(".")[0] == name
            for stats in backends.get("torch", {}).values()
            if "self_attention_cache_bytes_per_token" in stats
        ]
        measured = {
            "self_attention_per_token": runs[0]["self_attention_cache_bytes_per_token"] if runs else None,
            "cross_attention": runs[0]["cross_attention_cache_bytes"] if runs else None,
        }
        report[name] = {
            "expected": expected,
            "measured": measured,
            "matches": bool(runs) and all(measured[key] == value for key, value in expected.items()),
        }
    return report


def model_specs(model_dir: Path) -> dict:
    """The export specs of the saved model in ``model_dir``, over its own torch graphs."""
    loaded = load_model(model_dir)
    return loaded.task.export_specs(loaded.preprocess, loaded.state, loaded.task.graphs(loaded.model.eval()))


def _runners(
    models: list[str],
    graph_names: list[str],
    calls: dict,
    config: BenchmarkConfig,
    models_dir: Path,
    exported_dir: Path,
    threads: int,
) -> tuple[dict[tuple[str, str], Runner], dict[str, tuple[str, str]], dict[str, dict[str, dict]]]:
    """A runner per (row, backend), each row's (model, graph) whose inputs it takes, and the results table
    holding the backends that cannot run here with their reason. Rows: each graph, then each of the
    task's whole generations (``calls``)."""
    runners: dict[tuple[str, str], Runner] = {}
    graph_of: dict[str, str] = {}
    results: dict[str, dict[str, dict]] = {}
    for name in models:
        for graph in graph_names:
            row = row_name(name, graph)
            graph_of[row], results[row] = (name, graph), {}
            for backend in config.backends:
                runner = make_runner(backend, models_dir / name, exported_dir / name, graph, threads)
                if isinstance(runner, str):
                    results[row][backend] = {"skipped": runner}
                else:
                    runners[row, backend] = runner
        for call_name, call in calls.items():
            row = f"{name}.{call_name}"
            graph_of[row], results[row] = (name, call.inputs_of), {}
            for backend in config.backends:
                graphs = (
                    "timed with the cache only (the uncached loop is the fp32 baseline)"
                    if backend == "onnxruntime_int8" and not call.int8
                    else backend_graphs(backend, models_dir / name, exported_dir / name, graph_names, threads)
                )
                if isinstance(graphs, str):
                    results[row][backend] = {"skipped": graphs}
                else:
                    runners[row, backend] = generation_runner(call, graphs, backend)
    return runners, graph_of, results


def _first_calls(
    runners: dict[tuple[str, str], Runner], inputs: dict, batch_size: int, results: dict, log
) -> tuple[dict[tuple[str, str], float | None], dict[tuple[str, str], object]]:
    """Call every runner once (CUDA graphs are captured, torch.compile compiles) and take its peak
    memory and what that first call returned; a GPU backend that fails is recorded with its reason
    and dropped, any other raises."""
    peaks, firsts = {}, {}
    for key, runner in list(runners.items()):
        try:
            firsts[key] = runner(*inputs[key])
        except Exception as error:
            if key[1] not in MAY_FAIL:
                raise
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # a sticky CUDA error ends the run here, not in a later call
            reason = f"failed at batch {batch_size}: {type(error).__name__}: {error}"
            results[key[0]].setdefault(key[1], {})[str(batch_size)] = {"skipped": reason}
            del runners[key]
            log(f"{key[0]}/{key[1]}: {reason}")
            continue
        peaks[key] = _peak_mib(runner, inputs[key], key[1])
    return peaks, firsts


def spread(times: list[float]) -> float:
    """p90 / p50 of a pair's timed calls: 1 is a steady measurement; a busy machine's is far above."""
    return float(np.percentile(times, 90) / np.percentile(times, 50))


def _steady_timings(
    runners: dict[tuple[str, str], Runner], inputs: dict, config: BenchmarkConfig, log, batch_size: int
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], int]]:
    """Time every pair, then re-time (interleaved among themselves, up to ``config.retries`` times)
    the pairs whose spread is above ``config.max_spread``, keeping each pair's steadier timing."""
    timings = time_interleaved(runners, inputs, config)
    retimed = dict.fromkeys(timings, 0)
    for _ in range(config.retries):
        noisy = [key for key, times in timings.items() if spread(times) > config.max_spread]
        if not noisy:
            break
        log(f"batch {batch_size}: re-timing {len(noisy)} pairs with p90/p50 > {config.max_spread:g}")
        again = time_interleaved({key: runners[key] for key in noisy}, inputs, config)
        for key in noisy:
            retimed[key] += 1
            if spread(again[key]) < spread(timings[key]):
                timings[key] = again[key]
    return timings, retimed


def _statistics(times: list[float], batch_size: int, peak_mib: float | None, max_spread: float) -> dict:
    ms = np.asarray(times) * 1e3
    ratio = spread(times)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "throughput": round(batch_size / (statistics.median(times)), 2),
        "peak_mib": None if peak_mib is None else round(peak_mib, 2),
        "spread": round(ratio, 3),
        "noisy": ratio > max_spread,  # still above benchmark.max_spread after the re-timings: not trustworthy
    }


def _machine_use(models: list[str], specs: dict, results: dict, models_dir: Path, peak: float) -> dict:
    """Each ONNX Runtime row's achieved GFLOP/s and per-call overhead against the matmul peak."""
    machine_use = {}
    for name in models:
        loaded_model = load_model(models_dir / name)
        graphs = loaded_model.task.graphs(loaded_model.model.eval())
        for graph, spec in specs[name].items():
            stats = results[row_name(name, graph)].get("onnxruntime", {})
            if stats and "skipped" not in stats:
                example = spec.first_rows(spec.example_inputs, 1)
                machine_use[row_name(name, graph)] = roofline(stats, graph_gflops(graphs[graph], example), peak)
    return machine_use


def p50(report: dict, model: str, backend: str, batch_size: int) -> float | None:
    entry = report["results"].get(model, {}).get(backend, {})
    return entry.get(str(batch_size), {}).get("p50_ms")


def generation_table(report: dict) -> list[dict]:
    """One row per model x whole generation x backend x batch size: time per sample, the first
    token's time (the ``inputs_of`` graph's call: it returns the first step's logits, as
    :class:`~amad.contracts.graph.GenerationCall` has it), the time per later decoder step
    ((generation - first token) / (steps - 1)), tokens/s, and the speed-up of the cache where the
    call has an uncached baseline."""
    table = []
    for call_name, call in report.get("generation_calls", {}).items():
        for row, backends in report["results"].items():
            model, _, name = row.partition(".")
            if name != call_name:
                continue
            for backend, batches in backends.items():
                for size, stats in batches.items():
                    if "p50_ms" not in stats:
                        continue
                    first = p50(report, f"{model}.{call['inputs_of']}", backend, int(size))
                    later = (stats["p50_ms"] - first) / (stats["steps"] - 1) if first and stats["steps"] > 1 else None
                    entry = {
                        "model": model,
                        "generation": call_name,
                        "backend": backend,
                        "batch_size": int(size),
                        "ms_per_sample": stats["ms_per_sample"],
                        "first_token_ms": first,
                        "ms_per_step": None if later is None else round(later, 4),
                        "tokens_per_s": stats["tokens_per_s"],
                        "steps": stats["steps"],
                    }
                    baselines = [n for n, c in report["generation_calls"].items() if c["baseline_of"] == call_name]
                    for baseline in baselines:
                        slow = p50(report, f"{model}.{baseline}", backend, int(size))
                        entry[f"vs_{baseline}"] = round(slow / stats["p50_ms"], 3) if slow else None
                    table.append(entry)
    return table


def speedups(report: dict, teacher: str = "teacher") -> dict[str, float]:
    """Ratios at batch 1: each row vs the teacher's same graph (ONNX Runtime), ORT vs torch, int8 vs fp32;
    a whole generation vs its uncached baseline (``<row>_vs_<baseline>_<backend>_b1``)."""
    ratios = {}
    calls = report.get("generation_calls", {})
    for model in report["results"]:
        name = model.partition(".")[2]
        for baseline, call in calls.items():
            if call["baseline_of"] == name and name:
                for backend in ("torch", "onnxruntime"):
                    fast = p50(report, model, backend, 1)
                    slow = p50(report, f"{model.partition('.')[0]}.{baseline}", backend, 1)
                    if fast and slow:
                        ratios[f"{model}_vs_{baseline}_{backend}_b1"] = round(slow / fast, 3)
    for model in report["results"]:
        graph = model.partition(".")[2]
        teacher_row = f"{teacher}.{graph}" if graph else teacher
        teacher_ort = p50(report, teacher_row, "onnxruntime", 1)
        ort, eager, int8 = (p50(report, model, b, 1) for b in ("onnxruntime", "torch", "onnxruntime_int8"))
        if teacher_ort and ort and model != teacher_row:
            ratios[f"{model}_vs_teacher_onnxruntime_b1"] = round(teacher_ort / ort, 3)
        if ort and eager:
            ratios[f"{model}_onnxruntime_vs_torch_b1"] = round(eager / ort, 3)
        if ort and int8:
            ratios[f"{model}_int8_vs_fp32_b1"] = round(ort / int8, 3)
    return ratios
