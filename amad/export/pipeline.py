"""The ``export`` stage's work for one model: ONNX, parity gate, int8, fp16, TensorRT, export.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from amad.atomic import atomic_dir, write_json
from amad.errors import AmadError
from amad.evaluation import predict_outputs
from amad.export import tensorrt
from amad.export.onnx_model import OnnxModel, export_onnx
from amad.export.quantize import convert_fp16, quantize_int8
from amad.models import load_model
from amad.params import ExportConfig


def export_model(name: str, model_dir: Path, out_dir: Path, data_dir: Path, config: ExportConfig, log=print) -> dict:
    """Write ``out_dir`` (atomically) and return its ``export.json`` content.

    Raises:
        AmadError: fp32 parity with PyTorch fails on validation inputs (nothing is written).
    """
    loaded = load_model(model_dir)
    task, model, preprocess = loaded.task, loaded.model, loaded.preprocess
    val_set = task.dataset(data_dir, "val", preprocess, loaded.state)
    test_set = task.dataset(data_dir, "test", preprocess, loaded.state)
    parity_set = Subset(val_set, range(min(config.parity_samples, len(val_set))))
    spec = task.export_spec(preprocess, loaded.state)
    metric = task.primary_metric
    report: dict = {"model": name, "task": task.name}

    def outputs(forward, dataset, **kwargs):
        return predict_outputs(forward, dataset, task.model_inputs, **kwargs)

    with atomic_dir(out_dir) as staging:
        onnx_path = staging / "model.onnx"
        export_onnx(
            model, spec, onnx_path, opset=config.opset, extra_metadata={"amad.model": name, "amad.task": task.name}
        )
        fp32 = OnnxModel(onnx_path)
        torch_outputs = outputs(model, parity_set)
        report["parity"] = task.parity(torch_outputs, outputs(fp32, parity_set))
        report["parity"].update(samples=len(parity_set), atol=config.parity_atol, min_agreement=config.min_agreement)
        if (
            report["parity"]["max_abs_diff"] > config.parity_atol
            or report["parity"]["agreement"] < config.min_agreement
        ):
            raise AmadError(
                f"export of {name}: ONNX parity failed on {len(parity_set)} validation samples: max |diff| "
                f"{report['parity']['max_abs_diff']:.2e} (allowed {config.parity_atol:.0e}), agreement "
                f"{report['parity']['agreement']:.4f} (needed {config.min_agreement})"
            )
        log(
            f"{name}: ONNX parity max |diff| {report['parity']['max_abs_diff']:.1e}, "
            f"agreement {report['parity']['agreement']:.4f}"
        )
        report["metric"] = metric
        report["accuracy"] = {"onnx_fp32": task.evaluate(fp32, test_set)[metric]}
        if config.int8:
            quantize_int8(onnx_path, staging / "model.int8.onnx")
            int8 = OnnxModel(staging / "model.int8.onnx")
            report["accuracy"]["onnx_int8"] = task.evaluate(int8, test_set)[metric]
            report["int8_vs_fp32"] = task.parity(torch_outputs, outputs(int8, parity_set))
        convert_fp16(onnx_path, staging / "model.fp16.onnx")
        report["tensorrt"] = _tensorrt(staging, task, spec, config, test_set, report)
        report["files"] = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        write_json(staging / "export.json", report)
    return report


def _tensorrt(staging: Path, task: Any, spec: Any, config: ExportConfig, test_set: Any, report: dict) -> dict:
    if not config.tensorrt.enabled:
        return {"skipped": "disabled in params (export.tensorrt.enabled: false)"}
    reason = tensorrt.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    built = tensorrt.build_engine(
        staging / "model.onnx",
        staging / "model.fp16.onnx",
        staging / "model.plan",
        input_shapes={name: tuple(x.shape[1:]) for name, x in zip(spec.input_names, spec.example_inputs)},
        profile=config.tensorrt,
    )
    engine = tensorrt.TensorRTModel(staging / "model.plan", spec.input_names, spec.output_names[0])
    metric = task.primary_metric
    report["accuracy"]["tensorrt_fp16"] = task.evaluate(
        engine, test_set, device="cuda", batch_size=config.tensorrt.max_batch
    )[metric]
    return built
