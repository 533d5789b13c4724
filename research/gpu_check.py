"""The CUDA paths, checked on this machine's GPU in one run: ``make gpu-check`` / ``python -m research.gpu_check``.

1. ``train_teacher`` and one distillation (the last listed method, on the last student) on the GPU
   with bf16 autocast, from a copy of ``params.yaml`` with fewer epochs: the training loss must fall,
   the saved weights must be float32, and the checkpoint reloaded on the CPU must give the GPU's
   outputs (fp32, TF32 off) and the same test metric; ``distill.init: inherit`` from the teacher on
   the GPU must give the student it gives on the CPU;
2. the attention losses (AMAD ``kl`` / ``token`` with their hand-written backward passes, one-to-one,
   the MiniLM relation loss) on CUDA against the CPU: values and gradients, float32 inputs and
   bfloat16 inputs (which the losses compute in float32);
3. latency on the GPU at each ``--batch-sizes`` for ``torch_cuda_fp32`` / ``torch_cuda_fp16``, and at
   batch 1 with CUDA graphs and ``torch.compile`` (:mod:`amad.bench.cuda`), as ratios to torch fp32
   eager on the same GPU; fp16 predictions compared with fp32 ones on validation samples.

Without CUDA every CUDA part is recorded as skipped (the training part then runs on the CPU in
float32: a reference for the same profile). DDP over NCCL needs two GPUs and is skipped on one.
Writes ``OUT/gpu_check.json`` (after every part, so a run cut short keeps what it finished) and
``OUT/gpu_check.md``; exits 1 where a part raised or a check (:func:`checks`) failed.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from amad.atomic import write_json

SHAPE = {"batch": 8, "teacher_heads": 8, "student_heads": 2, "tokens": 65, "head_dim": 16}


def _section(report: dict, name: str, out: Path, work: Callable[[], Any]) -> Any:
    """Run one part; a failure is recorded with its traceback and the next part still runs."""
    started = time.perf_counter()
    try:
        result = work()
        report[name] = result
    except Exception as error:  # a check that breaks is a finding, not the end of the run
        result = None
        report[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
    report.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 2)
    write_json(out / "gpu_check.json", report)
    print(f"[gpu_check] {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def _profile(source: Path, work: Path, teacher_epochs: int, distill_epochs: int, tiny: bool) -> Path:
    """``params.yaml`` for the run: the project's, with fewer epochs (and tiny data with ``tiny``)."""
    raw = yaml.safe_load(source.read_text())
    raw["train"]["epochs"] = teacher_epochs
    raw["distill"]["train"]["epochs"] = distill_epochs
    raw["runtime"]["loader_workers"] = min(4, os.cpu_count() or 1)
    raw["data"]["path"] = str((source.parent / raw["data"]["path"]).resolve())
    if tiny:
        raw["data"]["shapes"].update({"train": 256, "val": 64, "test": 64})
        raw["train"]["batch_size"] = raw["distill"]["train"]["batch_size"] = 32
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _losses_fell(history: list[dict]) -> dict:
    first, last = history[0]["train/loss"], history[-1]["train/loss"]
    return {"first_epoch_loss": round(first, 4), "last_epoch_loss": round(last, 4), "fell": last < first}


def _reload_check(task: Any, model_dir: Path, data_dir: Path, device: torch.device, samples: int = 256) -> dict:
    """The saved model on the CPU vs on ``device`` (fp32, TF32 off): outputs, predictions, test metric."""
    from safetensors.torch import load_file

    from amad.export.pipeline import compare_runs, parity_run
    from amad.models import load_model
    from amad.models.evaluation import evaluate_model

    dtypes = sorted({str(t.dtype) for t in load_file(model_dir / "model.safetensors").values()})
    on_cpu = load_model(model_dir)
    val = on_cpu.task.dataset(data_dir, "val", on_cpu.preprocess, on_cpu.state)
    parity_sets = task.parity_inputs(val, samples)
    test = on_cpu.task.dataset(data_dir, "test", on_cpu.preprocess, on_cpu.state)
    metric = task.primary_metric
    result = {"weight_dtypes": dtypes, "cpu_test_metric": evaluate_model(task, on_cpu.model, test)[metric]}
    if device.type != "cuda":
        return result
    on_gpu = load_model(model_dir, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu_graphs = task.graphs(on_cpu.model)
        specs = task.export_specs(on_cpu.preprocess, on_cpu.state, cpu_graphs)
        cpu = parity_run(task, cpu_graphs, specs, parity_sets)
        gpu = parity_run(task, task.graphs(on_gpu.model), specs, parity_sets, device=device)
        comparison = compare_runs(task, cpu, gpu)
        result["max_abs_diff"] = comparison["max_abs_diff"]
        result["max_abs_diff_per_output"] = comparison["max_abs_diff_per_output"]
        result["prediction_agreement"] = comparison["agreement"]
        result["gpu_test_metric"] = evaluate_model(task, on_gpu.model, test, device=device)[metric]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return result


def _training(params_path: Path, work: Path, report: dict, out: Path) -> None:
    from amad.config.params import load_params
    from amad.training.distributed import init_runtime
    from amad.training.jobs import distill_student, train_teacher

    params = load_params(params_path)
    task = params.task_plugin()
    runtime = init_runtime()
    data, models = work / "data" / "prepared", work / "models"
    student, method = list(params.students)[-1], params.distill.methods[-1]
    report["training_device"] = str(runtime.device) + (" (bf16 autocast)" if runtime.device.type == "cuda" else "")

    def prepare() -> dict:
        task.prepare(params.data, params.seed, data)
        return task.split_sizes(data)

    def teacher() -> dict:
        started = time.perf_counter()
        result = train_teacher(params, data, models / "teacher", runtime, checkpoint_dir=work / "ckpt", log_dir=None)
        return {
            "epochs": params.train.epochs,
            "steps": params.train.epochs * (task.split_sizes(data)["train"] // params.train.batch_size),
            "seconds": round(time.perf_counter() - started, 1),
            "history": result.history,
            **_losses_fell(result.history),
            "reload": _reload_check(task, models / "teacher", data, runtime.device),
        }

    def distill() -> dict:
        started = time.perf_counter()
        name = f"{student}-{method}"
        result = distill_student(
            params, student, method, models / "teacher", data, models / name, runtime,
            checkpoint_dir=work / "ckpt", log_dir=None,
        )  # fmt: skip
        return {
            "model": name,
            "epochs": params.distill.train.epochs,
            "seconds": round(time.perf_counter() - started, 1),
            "history": result.history,
            **_losses_fell(result.history),
            "reload": _reload_check(task, models / name, data, runtime.device),
        }

    def inherit_on_device() -> dict:
        """``distill.init: inherit`` from the teacher on the training device equals inheriting on the CPU."""
        from dataclasses import replace

        from amad.models import load_model
        from amad.training.jobs import build_model, inherit_teacher

        distill = replace(params.distill, init=replace(params.distill.init, strategy="inherit", heads="first"))
        states = []
        for device in ("cpu", runtime.device):
            loaded = load_model(models / "teacher", device=device)
            model = build_model(task, params.student(student), loaded.state, 0, lambda _: None)
            train_set = task.dataset(data, "train", loaded.preprocess, loaded.state)
            inherit_teacher(task, loaded.model, model, distill, train_set, device, lambda _: None)
            states.append(model.state_dict())
        on_cpu, on_device = states
        return {
            "device": str(runtime.device),
            "max_abs_diff": max(float((on_cpu[k] - on_device[k].cpu()).abs().max()) for k in on_cpu),
        }

    _section(report, "prepare", out, prepare)
    _section(report, "train_teacher", out, teacher)
    _section(report, "inherit_on_device", out, inherit_on_device)
    _section(report, "distill", out, distill)
    report["models"] = ["teacher", f"{student}-{method}"]


def _loss_cases() -> dict[str, tuple[str, str, Callable[..., torch.Tensor]]]:
    """name -> (teacher input, student input, loss of (teacher, student, query mask))."""
    from amad.losses.amad import amad_loss
    from amad.losses.one_to_one import one_to_one_loss
    from amad.losses.relation import relation_loss

    def relation(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return relation_loss(tuple(teacher), tuple(student), num_relation_heads=4, query_mask=mask, key_mask=mask)

    return {
        "amad_kl": ("maps_t", "maps_s", lambda t, s, m: amad_loss(t, s, variant="kl", temperature=0.5, query_mask=m)),
        "amad_token": (
            "maps_t",
            "maps_s",
            lambda t, s, m: amad_loss(t, s, variant="token", temperature=0.5, query_mask=m),
        ),
        "one2one": ("maps_t", "maps_s", lambda t, s, m: one_to_one_loss(t, s, head_mismatch="mean_pool", query_mask=m)),
        "minilm_relation": ("qkv_t", "qkv_s", relation),
    }


def _loss_inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    b, ht, hs, n, d = (SHAPE[k] for k in ("batch", "teacher_heads", "student_heads", "tokens", "head_dim"))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[:, n - 9 :] = False  # padded rows
    return {
        "maps_t": torch.randn(b, ht, n, n, generator=generator).mul(2).softmax(-1).to(dtype),
        "maps_s": torch.randn(b, hs, n, n, generator=generator).mul(2).softmax(-1).to(dtype),
        "qkv_t": torch.randn(3, b, ht, n, d, generator=generator).to(dtype),
        "qkv_s": torch.randn(3, b, hs, n, 2 * d, generator=generator).to(dtype),
        "mask": mask,
    }


def _loss_and_grad(case: tuple, inputs: dict[str, torch.Tensor], device: str) -> tuple[float, torch.Tensor]:
    teacher_key, student_key, loss_of = case
    student = inputs[student_key].to(device).clone().requires_grad_(True)
    loss = loss_of(inputs[teacher_key].to(device), student, inputs["mask"].to(device))
    loss.backward()
    return float(loss.detach().float()), student.grad.detach().float().cpu()


def loss_parity() -> dict:
    """Each attention loss and its gradient on CUDA vs the CPU (float32 reference on the same values)."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        inputs = _loss_inputs(dtype)
        reference_inputs = {k: v.float() if v.is_floating_point() else v for k, v in inputs.items()}
        for name, case in _loss_cases().items():
            cpu_loss, cpu_grad = _loss_and_grad(case, reference_inputs, "cpu")
            gpu_loss, gpu_grad = _loss_and_grad(case, inputs, "cuda")
            scale = float(cpu_grad.abs().max()) or 1.0
            result[f"{name}/{str(dtype).removeprefix('torch.')}"] = {
                "cpu_loss": cpu_loss,
                "cuda_loss": gpu_loss,
                "loss_rel_diff": abs(gpu_loss - cpu_loss) / max(abs(cpu_loss), 1e-12),
                "grad_max_abs_diff_over_max": float((gpu_grad - cpu_grad).abs().max()) / scale,
            }
    return result


def fp16_agreement(models: list[str], work: Path, samples: int = 512) -> dict:
    """Share of validation predictions fp16 on the GPU shares with fp32 on the GPU, and the max output gap."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    from amad.export.pipeline import compare_runs, parity_run
    from amad.models import load_model

    def cast(graph: Any, dtype: torch.dtype) -> Any:
        return lambda *x: graph(*(t.to(dtype) if t.is_floating_point() else t for t in x))

    result = {}
    for name in models:
        loaded = load_model(work / "models" / name)
        val = loaded.task.dataset(work / "data" / "prepared", "val", loaded.preprocess, loaded.state)
        parity_sets = loaded.task.parity_inputs(val, samples)
        specs = loaded.task.export_specs(loaded.preprocess, loaded.state, loaded.task.graphs(loaded.model))
        runs = {}
        for dtype in (torch.float32, torch.float16):
            graphs = loaded.task.graphs(load_model(work / "models" / name, device="cuda").model.to(dtype))
            graphs = {graph: cast(module, dtype) for graph, module in graphs.items()}
            runs[dtype] = parity_run(loaded.task, graphs, specs, parity_sets, device="cuda")
        half_outputs = runs[torch.float16][0]
        comparison = compare_runs(loaded.task, runs[torch.float32], runs[torch.float16])
        result[name] = {
            "finite": all(bool(torch.isfinite(v).all()) for outputs in half_outputs.values() for v in outputs.values()),
            "max_abs_diff": comparison["max_abs_diff"],
            "max_abs_diff_per_output": comparison["max_abs_diff_per_output"],
            "prediction_agreement": comparison["agreement"],
        }
    return result


def gpu_latency(models: list[str], work: Path, batch_sizes: tuple[int, ...], repeats: int) -> dict:
    """CUDA backends at every batch size, then CUDA graphs and torch.compile at batch 1."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    from amad.bench.config import BenchmarkConfig
    from amad.bench.latency import run_benchmark

    def bench(backends: tuple[str, ...], sizes: tuple[int, ...]) -> dict:
        config = BenchmarkConfig(
            batch_sizes=sizes,
            backends=backends,
            warmup=10,
            repeats=repeats,
            burst=4,
            threads=0,
            max_spread=1.5,
            retries=2,
        )
        return run_benchmark(
            models, config, data_dir=work / "data" / "prepared", models_dir=work / "models",
            exported_dir=work / "exported",
        )["results"]  # fmt: skip

    eager = bench(("torch_cuda_fp32", "torch_cuda_fp16"), batch_sizes)
    batch_one = bench(("torch_cuda_fp32", "torch_cuda_fp16_graph", "torch_cuda_fp16_compile"), (1,))
    ratios = {}
    for row, backends in batch_one.items():
        base = backends["torch_cuda_fp32"].get("1", {}).get("p50_ms")
        for backend, stats in backends.items():
            p50 = stats.get("1", {}).get("p50_ms")
            if base and p50 and backend != "torch_cuda_fp32":
                ratios[f"{row}/{backend}_vs_fp32_eager_b1"] = round(base / p50, 2)
        for size in batch_sizes:
            base, half = (
                eager[row][b].get(str(size), {}).get("p50_ms") for b in ("torch_cuda_fp32", "torch_cuda_fp16")
            )
            if base and half:
                ratios[f"{row}/torch_cuda_fp16_vs_fp32_eager_b{size}"] = round(base / half, 2)
    return {"batch_sizes": eager, "batch_1": batch_one, "ratios": ratios}


def checks(report: dict) -> dict[str, bool]:
    """Pass / fail of every figure that has a right answer (parts that were skipped check nothing)."""
    result = {}
    for part in ("train_teacher", "distill"):
        entry = report.get(part) or {}
        reload = entry.get("reload", {})
        result[f"{part}: loss fell"] = bool(entry.get("fell"))
        result[f"{part}: float32 weights"] = reload.get("weight_dtypes") == ["torch.float32"]
        if "gpu_test_metric" in reload:
            result[f"{part}: reloaded on the CPU = on the GPU"] = (
                reload["max_abs_diff"] <= 1e-4 and reload["prediction_agreement"] == 1.0
                and abs(reload["gpu_test_metric"] - reload["cpu_test_metric"]) <= 1e-3
            )  # fmt: skip
    inherited = report.get("inherit_on_device") or {}
    if "max_abs_diff" in inherited:
        result["inherit: teacher on the device = on the CPU"] = inherited["max_abs_diff"] <= 1e-6
    for name, entry in (report.get("loss_parity") or {}).items():
        if isinstance(entry, dict) and "cpu_loss" in entry:
            grad_tolerance = 1e-5 if name.endswith("float32") else 1e-2  # bf16 inputs keep bf16 gradients
            result[f"loss {name}: CUDA = CPU"] = (
                entry["loss_rel_diff"] <= 1e-5 and entry["grad_max_abs_diff_over_max"] <= grad_tolerance
            )
    for name, entry in (report.get("fp16_agreement") or {}).items():
        if isinstance(entry, dict) and "finite" in entry:
            result[f"fp16 {name}: finite, >= 98% same predictions"] = (
                entry["finite"] and entry["prediction_agreement"] >= 0.98
            )
    return result


def _markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device']}", "", f"torch {report['torch']}; {report['started']}", ""]
    for part in ("train_teacher", "distill"):
        entry = report.get(part) or {}
        if "error" in entry:
            lines += [f"- {part}: **error** {entry['error']}"]
            continue
        reload = entry.get("reload", {})
        lines += [
            f"- {part} ({report.get('training_device')}): {entry.get('epochs')} epochs in {entry.get('seconds')} s, "
            f"loss {entry.get('first_epoch_loss')} -> {entry.get('last_epoch_loss')}; weights {reload.get('weight_dtypes')}; "
            f"test metric CPU {reload.get('cpu_test_metric')} / GPU {reload.get('gpu_test_metric')}; "
            + ", ".join(f"{k} {v:.3g}" for k, v in reload.items() if k.endswith(("diff", "agreement")))
        ]
    lines += ["", "## Losses, CUDA vs CPU", ""]
    for name, entry in (report.get("loss_parity") or {}).items():
        if isinstance(entry, dict) and "cpu_loss" in entry:
            lines.append(
                f"- {name}: loss {entry['cpu_loss']:.6g} / {entry['cuda_loss']:.6g} (rel diff {entry['loss_rel_diff']:.2e}), "
                f"grad max diff / max {entry['grad_max_abs_diff_over_max']:.2e}"
            )
        else:
            lines.append(f"- {name}: {entry}")
    lines += ["", "## fp16 vs fp32 predictions on the GPU", ""]
    lines += [f"- {k}: {v}" for k, v in (report.get("fp16_agreement") or {}).items()]
    latency = report.get("latency") or {}
    lines += ["", "## Latency (p50 ms, CUDA events)", ""]
    for table in ("batch_sizes", "batch_1"):
        for row, backends in (latency.get(table) or {}).items():
            for backend, stats in backends.items():
                cells = (
                    stats["skipped"] if "skipped" in stats
                    else ", ".join(f"b{s} {v.get('p50_ms', v.get('skipped'))}" for s, v in stats.items())
                )  # fmt: skip
                lines.append(f"- {row} / {backend}: {cells}")
    lines += ["", "## Ratios to torch fp32 eager on this GPU", ""]
    lines += [f"- {k}: {v}x" for k, v in (latency.get("ratios") or {}).items()]
    errors = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    failed = [name for name, passed in report.get("checks", {}).items() if not passed]
    lines += ["", f"Errors: {', '.join(errors) if errors else 'none'}"]
    lines += [
        f"Checks: {len(report.get('checks', {})) - len(failed)} passed, failed: {'; '.join(failed) or 'none'}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json / .md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: OUT/work)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--distill-epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--tiny", action="store_true", help="tiny data and batches (a quick dry run)")
    args = parser.parse_args(argv)
    out = args.out
    work = args.work or out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device (CPU)",
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "ddp_nccl": {"skipped": "needs two GPUs (NCCL runs one rank per device)"}
        if torch.cuda.device_count() < 2 else {"skipped": "not run by this check: use torchrun"},
    }  # fmt: skip
    params_path = _profile(args.params, work, args.teacher_epochs, args.distill_epochs, args.tiny)
    _training(params_path, work, report, out)
    _section(report, "loss_parity", out, loss_parity)
    models = report["models"]
    _section(report, "fp16_agreement", out, lambda: fp16_agreement(models, work))
    sizes = tuple(int(s) for s in args.batch_sizes.split(","))
    _section(report, "latency", out, lambda: gpu_latency(models, work, sizes, args.repeats))
    report["checks"] = checks(report)
    write_json(out / "gpu_check.json", report)
    (out / "gpu_check.md").write_text(_markdown(report))
    print((out / "gpu_check.md").read_text())
    errors = any(isinstance(v, dict) and "error" in v for v in report.values())
    return 1 if errors or not all(report["checks"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
