"""int8 (ONNX Runtime dynamic, per-channel) and fp16 variants of an exported model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

# The patch-embedding Conv stays fp32: ONNX Runtime's ConvInteger kernel is slower than its fp32
# Conv (teacher, batch 32: 2.6 ms vs 0.6 ms on a 2-core CPU), which cost int8 its batch-32 gain.
QUANTIZED_OPS = ["MatMul", "Gemm", "Gather"]


def quantize_int8(source: str | Path, target: str | Path) -> None:
    """``quant_pre_process`` (shape inference + graph clean-up), then dynamic per-channel int8 weights
    for :data:`QUANTIZED_OPS` (the linear layers and the token embedding).

    ONNX Runtime's symbolic shape inference fails on some graphs (open_clip's class-token ``Expand``);
    those are pre-processed with ONNX's own shape inference instead."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        except Exception:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
        )
    _copy_metadata(source, target)


def convert_fp16(source: str | Path, target: str | Path) -> None:
    """fp16 weights and compute, fp32 inputs / outputs (the graph TensorRT 11 builds from)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(converted, str(target))
    _copy_metadata(source, target)


def _copy_metadata(source: str | Path, target: str | Path) -> None:
    original = onnx.load(str(source), load_external_data=False)
    model = onnx.load(str(target))
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    onnx.save(model, str(target))
