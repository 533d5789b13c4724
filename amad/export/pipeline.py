"""The ``export`` stage's work for one model: ONNX, parity gate, int8, fp16, TensorRT, export.json."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Subset

from amad.atomic import atomic_dir, write_json
from amad.config import ExportConfig
from amad.data.dataset import VQADataset
from amad.errors import AmadError
from amad.evaluation import accuracy_report, predict_logits
from amad.export import tensorrt
from amad.export.onnx_model import OnnxClassifier, export_onnx
from amad.export.quantize import convert_fp16, quantize_int8
from amad.models import load_model


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """Max absolute logit difference and share of identical predicted answers."""
    return {
        "max_abs_diff": float((reference - candidate).abs().max()),
        "agreement": float((reference.argmax(-1) == candidate.argmax(-1)).float().mean()),
    }


def export_model(name: str, model_dir: Path, out_dir: Path, data_dir: Path, config: ExportConfig, log=print) -> dict:
    """Write ``out_dir`` (atomically) and return its ``export.json`` content.

    Raises:
        AmadError: fp32 parity with PyTorch fails on validation inputs (nothing is written).
    """
    loaded = load_model(model_dir)
    model, preprocess, answers = loaded.model, loaded.preprocess, loaded.answers
    val_set = VQADataset(data_dir, "val", preprocess, answers)
    test_set = VQADataset(data_dir, "test", preprocess, answers)
    parity_set = Subset(val_set, range(min(config.parity_samples, len(val_set))))
    report: dict = {"model": name}
    with atomic_dir(out_dir) as staging:
        onnx_path = staging / "model.onnx"
        export_onnx(model, preprocess, answers, onnx_path, opset=config.opset, extra_metadata={"amad.model": name})
        fp32 = OnnxClassifier(onnx_path)
        torch_logits = predict_logits(model, parity_set)
        report["parity"] = parity(torch_logits, predict_logits(fp32, parity_set))
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
        report["accuracy"] = {"onnx_fp32": accuracy_report(predict_logits(fp32, test_set), test_set)["accuracy"]}
        if config.int8:
            quantize_int8(onnx_path, staging / "model.int8.onnx")
            int8 = OnnxClassifier(staging / "model.int8.onnx")
            report["accuracy"]["onnx_int8"] = accuracy_report(predict_logits(int8, test_set), test_set)["accuracy"]
            report["int8_vs_fp32"] = parity(torch_logits, predict_logits(int8, parity_set))
        convert_fp16(onnx_path, staging / "model.fp16.onnx")
        report["tensorrt"] = _tensorrt(staging, preprocess, config, test_set, report)
        report["files"] = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        write_json(staging / "export.json", report)
    return report


def _tensorrt(staging: Path, preprocess, config: ExportConfig, test_set: VQADataset, report: dict) -> dict:
    if not config.tensorrt.enabled:
        return {"skipped": "disabled in params (export.tensorrt.enabled: false)"}
    reason = tensorrt.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    built = tensorrt.build_engine(
        staging / "model.onnx",
        staging / "model.fp16.onnx",
        staging / "model.plan",
        image_size=preprocess.image_size,
        context_length=preprocess.context_length,
        profile=config.tensorrt,
    )
    engine = tensorrt.TensorRTClassifier(staging / "model.plan")
    logits = predict_logits(engine, test_set, batch_size=config.tensorrt.max_batch, device="cuda")
    report["accuracy"]["tensorrt_fp16"] = accuracy_report(logits, test_set)["accuracy"]
    return built
