"""``benchmark``: the latency benchmark of every exported model x backend x batch size (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import child, require, require_choice

BACKENDS = (
    "torch",
    "onnxruntime",
    "onnxruntime_int8",
    "torch_cuda_fp32",
    "torch_cuda_fp16",
    "torch_cuda_fp16_graph",
    "torch_cuda_fp16_compile",
    "tensorrt",
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Latency benchmark of every exported model x backend x batch size."""

    batch_sizes: tuple[int, ...]
    backends: tuple[str, ...]
    warmup: int
    repeats: int  # timed calls per model x backend x batch size
    burst: int  # back-to-back calls per pair and round; the first is not timed
    threads: int  # 0: all cores
    max_spread: float  # p90 / p50 above which a pair is re-timed and, if it stays above, flagged noisy
    retries: int  # re-timings of the noisy pairs

    def validate(self, key: str) -> None:
        require(len(self.batch_sizes) > 0, f"{key}.batch_sizes", "list at least one batch size")
        for index, size in enumerate(self.batch_sizes):
            require(size >= 1, child(f"{key}.batch_sizes", index), f"must be >= 1, got {size}")
        require(len(self.backends) > 0, f"{key}.backends", "list at least one backend")
        for index, backend in enumerate(self.backends):
            require_choice(backend, BACKENDS, child(f"{key}.backends", index))
        require(self.warmup >= 0, f"{key}.warmup", f"must be >= 0, got {self.warmup}")
        require(self.repeats >= 3, f"{key}.repeats", f"must be >= 3 (percentiles), got {self.repeats}")
        require(
            self.burst >= 1, f"{key}.burst", f"must be >= 1 (1: one timed call per pair and round), got {self.burst}"
        )
        require(self.threads >= 0, f"{key}.threads", f"must be >= 0 (0: all cores), got {self.threads}")
        require(self.max_spread > 1, f"{key}.max_spread", f"must be > 1 (p90 / p50), got {self.max_spread}")
        require(self.retries >= 0, f"{key}.retries", f"must be >= 0, got {self.retries}")
