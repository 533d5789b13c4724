"""PyTorch on a CUDA device, as benchmark backends, timed with CUDA events.

The backends (``benchmark.backends``):

- ``torch_cuda_fp32``: eager, float32 weights and inputs (TF32 as PyTorch's defaults leave it):
  the baseline the others are compared with on the same GPU;
- ``torch_cuda_fp16``: eager, float16;
- ``torch_cuda_fp16_graph``: float16, the forward captured once per input shape as a CUDA graph and
  replayed (one launch instead of one per kernel: what helps a small model at batch 1);
- ``torch_cuda_fp16_compile``: float16, ``torch.compile`` (inductor, default mode; compiled once per
  input shape during the warm-up calls).

Each call takes host tensors, as a server receives them: the host-to-device copy of the inputs is
part of the timed call, the outputs stay on the device. A call is timed by CUDA events recorded on
the current stream around it, so the time is the device's, launch gaps included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

CUDA_BACKENDS = ("torch_cuda_fp32", "torch_cuda_fp16", "torch_cuda_fp16_graph", "torch_cuda_fp16_compile")


def _no_silent_eager_fallback() -> None:
    """Every model x batch size compiles the same ``forward``: raise the recompile limit above a
    benchmark's needs, and make hitting it an error (by default Dynamo runs eager with a warning,
    which would be timed as compiled)."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed between releases
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True


class CudaRunner:
    """Runs one graph of a model on the GPU; ``timed`` returns the call's seconds by CUDA events."""

    def __init__(self, module: nn.Module, backend: str) -> None:
        if backend not in CUDA_BACKENDS:
            raise ValueError(f"unknown CUDA backend {backend!r}")
        self.dtype = torch.float32 if backend == "torch_cuda_fp32" else torch.float16
        self.module = module.to("cuda", self.dtype).eval()
        self.backend = backend
        self._forward: Callable[..., Any] = self.module
        if backend == "torch_cuda_fp16_compile":
            _no_silent_eager_fallback()
            self._forward = torch.compile(self.module, dynamic=False)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]] = {}

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to("cuda", self.dtype if x.is_floating_point() else x.dtype, non_blocking=True)

    def _captured(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]:
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key not in self._graphs:
            static = [self._to_device(x) for x in inputs]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm-up outside the capture (allocator, lazy initialisation)
                    self.module(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph), torch.inference_mode():
                    output = self.module(*static)
            except Exception as error:
                # a failed capture leaves the capture stream current, and ending the capture raises
                # its own error over the cause: put the stream back and report the cause
                torch.cuda.set_stream(torch.cuda.default_stream())
                cause = error.__context__ or error
                raise RuntimeError(f"CUDA graph capture failed: {type(cause).__name__}: {cause}") from error
            self._graphs[key] = (graph, static, output)
        return self._graphs[key]

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.backend == "torch_cuda_fp16_graph":
            graph, static, output = self._captured(inputs)
            for buffer, x in zip(static, inputs):
                buffer.copy_(x, non_blocking=True)
            graph.replay()
            return output
        with torch.inference_mode():
            return self._forward(*(self._to_device(x) for x in inputs))

    def timed(self, *inputs: torch.Tensor) -> float:
        """Seconds of one call, from CUDA events around it (waits for the device to finish)."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self(*inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def peak_mib(self, *inputs: torch.Tensor) -> float:
        """Device memory one call allocates beyond what is held before it (weights, captured graphs:
        call it after a first call)."""
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        self(*inputs)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
