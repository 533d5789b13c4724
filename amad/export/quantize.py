"""int8 (ONNX Runtime dynamic or static, per-channel) and fp16 variants of an exported model."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx

# The patch-embedding Conv stays fp32: ONNX Runtime's ConvInteger kernel is slower than its fp32
# Conv (teacher, batch 32: 2.6 ms vs 0.6 ms on a 2-core CPU), which cost int8 its batch-32 gain.
DYNAMIC_OPS = ["MatMul", "Gemm", "Gather"]
# Static: the linear layers only (MatMul / Gemm with a constant B); attention's activation x
# activation products, the embeddings and everything else stay fp32.
STATIC_OPS = ["MatMul", "Gemm"]


def _pre_process(source: Path, prepared: Path) -> None:
    """``quant_pre_process`` (shape inference + graph clean-up). ONNX Runtime's symbolic shape
    inference fails on some graphs (open_clip's class-token ``Expand``); those are pre-processed
    with ONNX's own shape inference instead."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    except Exception:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)


@contextmanager
def _pre_processed(source: str | Path) -> Iterator[str]:
    """A pre-processed temporary copy of ``source`` (see :func:`_pre_process`), as a path string."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        _pre_process(Path(source), prepared)
        yield str(prepared)


def quantize_dynamic_int8(source: str | Path, target: str | Path) -> None:
    """Dynamic per-channel int8 weights for :data:`DYNAMIC_OPS` (the linear layers and the token
    embedding); activations are quantised at run time, per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _pre_processed(source) as prepared:
        quantize_dynamic(
            prepared,
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=DYNAMIC_OPS,
        )
    _copy_metadata(source, target)


def constant_b_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the :data:`STATIC_OPS` nodes whose second input (B, the weight) is a constant."""
    constants = {i.name for i in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in graph.node if node.op_type in STATIC_OPS and node.input[1] in constants]


class _Feeds:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of input feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_static_int8(source: str | Path, target: str | Path, calibration: Iterable[dict[str, np.ndarray]]) -> None:
    """Static QDQ int8: per-channel int8 weights and uint8 activations for the MatMul / Gemm layers
    whose B is a constant, activation ranges calibrated (min / max) on ``calibration`` feeds
    (``{input name: array}``, e.g. validation batches); the rest stays fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _pre_processed(source) as prepared:
        quantize_static(
            prepared,
            str(target),
            _Feeds(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=STATIC_OPS,
            # named explicitly: ONNX Runtime 1.32's QDQ quantiser ignores MatMulConstBOnly and
            # quantised attention's activation x activation products too
            nodes_to_quantize=constant_b_nodes(onnx.load(prepared).graph),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},
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
