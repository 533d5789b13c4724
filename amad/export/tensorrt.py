"""TensorRT engines from the exported ONNX, for the TensorRT 10 and 11 Python APIs.

TensorRT 10 builds fp16 from the fp32 ONNX with the ``FP16`` builder flag. TensorRT 11 has no
such flag: precision lives in the graph, so it builds a *strongly typed* network from the fp16
ONNX. Nothing here touches TensorRT unless a CUDA device is present and ``tensorrt`` imports;
otherwise :func:`unavailable_reason` says why and callers record ``{"skipped": reason}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from amad.config.typed import to_dict
from amad.contracts.graph import BATCH_AXIS, GraphSpec
from amad.export.config import TensorRTConfig

Shape = tuple[int, ...]


def unavailable_reason() -> str | None:
    """None when TensorRT can run here, else why not (CUDA is checked before importing TensorRT)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        return f"tensorrt is not installed ({error}); pip install 'amad[tensorrt]'"
    return None


def tensorrt_major_version() -> int:
    import tensorrt as trt

    return int(trt.__version__.split(".")[0])


def optimisation_shapes(spec: GraphSpec, profile: TensorRTConfig) -> dict[str, tuple[Shape, Shape, Shape]]:
    """``{input: (min, opt, max) shape}`` of a graph's optimisation profile. The batch axis, wherever
    it is (a key/value cache has it on axis 1), runs over ``min_batch`` / ``opt_batch`` /
    ``max_batch``; another dynamic axis (a sequence, the cache's past) over 1 / the example's size /
    its ``axis_limits`` entry; a fixed axis keeps the example's size. ValueError for a dynamic axis
    without a limit (TensorRT needs its largest size)."""
    shapes = {}
    for name, example in zip(spec.input_names, spec.example_inputs, strict=True):
        axes = spec.axes_of(name)
        low, opt, high = [], [], []
        for axis, size in enumerate(example.shape):
            axis_name = axes.get(axis)
            if axis_name == BATCH_AXIS:
                sizes = (profile.min_batch, profile.opt_batch, profile.max_batch)
            elif axis_name is None:
                sizes = (size, size, size)
            elif axis_name in spec.axis_limits:
                limit = spec.axis_limits[axis_name]
                sizes = (1, min(max(size, 1), limit), limit)
            else:
                raise ValueError(
                    f"{name}: dynamic axis {axis} ({axis_name}) has no axis limit; TensorRT needs its largest size"
                )
            for bounds, value in zip((low, opt, high), sizes):
                bounds.append(value)
        shapes[name] = (tuple(low), tuple(opt), tuple(high))
    return shapes


def build_engine(
    onnx_fp32: str | Path,
    onnx_fp16: str | Path,
    plan: str | Path,
    *,
    input_shapes: dict[str, tuple[Shape, Shape, Shape]],
    profile: TensorRTConfig,
) -> dict:
    """Build and serialise an fp16 engine; returns what was built (version, precision source).

    ``input_shapes``: each graph input's (min, opt, max) shape, batch axis included
    (:func:`optimisation_shapes`).
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"TensorRT unavailable: {reason}")
    import tensorrt as trt

    major = tensorrt_major_version()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if major >= 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        source = Path(onnx_fp16)
    else:
        flags = 0  # explicit batch is the only mode in TensorRT 10
        source = Path(onnx_fp32)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, profile.workspace_mib << 20)
    if major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    for name, (low, opt, high) in input_shapes.items():
        optimisation.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    Path(plan).write_bytes(bytes(serialized))
    return {"version": trt.__version__, "precision": "fp16", "built_from": source.name, "profile": to_dict(profile)}


class TensorRTModel:
    """Runs a serialised engine on CUDA tensors: ``(*inputs) -> {output name: tensor}``.

    Args:
        plan: the serialised engine.
        input_names: the graph's inputs, in call order.
        output_names: the graph's outputs (each is returned, in the engine's dtype).
        metadata: the graph's ``amad.*`` metadata (what a predictor reads of it: a decoder's ids).
    """

    def __init__(
        self,
        plan: str | Path,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        import tensorrt as trt

        self.input_names, self.output_names, self.metadata = input_names, output_names, metadata or {}
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        torch_dtypes = {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.int32: torch.int32,
            trt.int64: torch.int64,
            trt.bool: torch.bool,
        }
        self.output_dtypes = {name: torch_dtypes[self.engine.get_tensor_dtype(name)] for name in output_names}

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        on_device = [_engine_input(torch.as_tensor(x)) for x in inputs]
        for name, tensor in zip(self.input_names, on_device, strict=True):
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, device="cuda", dtype=self.output_dtypes[name])
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return outputs


def _engine_input(tensor: torch.Tensor) -> torch.Tensor:
    """A graph input on the GPU in the dtype the engine takes: float32, int64, or bool (a mask)."""
    if tensor.is_floating_point():
        return tensor.cuda().float().contiguous()
    return tensor.cuda().contiguous() if tensor.dtype == torch.bool else tensor.cuda().long().contiguous()
