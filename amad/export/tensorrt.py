"""TensorRT engines from the exported ONNX, for the TensorRT 10 and 11 Python APIs.

TensorRT 10 builds fp16 from the fp32 ONNX with the ``FP16`` builder flag. TensorRT 11 has no
such flag: precision lives in the graph, so it builds a *strongly typed* network from the fp16
ONNX. Nothing here touches TensorRT unless a CUDA device is present and ``tensorrt`` imports;
otherwise :func:`unavailable_reason` says why and callers record ``{"skipped": reason}``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from amad.config import TensorRTConfig, to_dict
from amad.export.onnx_model import INPUTS, OUTPUT


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


def build_engine(
    onnx_fp32: str | Path,
    onnx_fp16: str | Path,
    plan: str | Path,
    *,
    image_size: int,
    context_length: int,
    profile: TensorRTConfig,
) -> dict:
    """Build and serialise an fp16 engine; returns what was built (version, precision source)."""
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
    shapes = {"pixels": (3, image_size, image_size), "tokens": (context_length,)}
    optimisation = builder.create_optimization_profile()
    for name in INPUTS:
        optimisation.set_shape(
            name,
            (profile.min_batch, *shapes[name]),
            (profile.opt_batch, *shapes[name]),
            (profile.max_batch, *shapes[name]),
        )
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    Path(plan).write_bytes(bytes(serialized))
    return {"version": trt.__version__, "precision": "fp16", "built_from": source.name, "profile": to_dict(profile)}


class TensorRTClassifier:
    """Runs a serialised engine on CUDA tensors: ``(pixels, tokens) -> logits``."""

    def __init__(self, plan: str | Path) -> None:
        import tensorrt as trt

        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def __call__(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pixels = pixels.cuda().float().contiguous()
        tokens = tokens.cuda().to(torch.int64).contiguous()
        for name, tensor in (("pixels", pixels), ("tokens", tokens)):
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        logits = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(OUTPUT, logits.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return logits
