"""``export``: which models are exported, the parity gate, int8 and TensorRT (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require, require_choice

INT8_MODES = ("dynamic", "static", "auto", "none")


@dataclass(frozen=True)
class TensorRTConfig:
    """TensorRT engine build (only where ``tensorrt`` imports and CUDA is present)."""

    enabled: bool
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int

    def validate(self, key: str) -> None:
        require(self.min_batch >= 1, f"{key}.min_batch", f"must be >= 1, got {self.min_batch}")
        require(
            self.min_batch <= self.opt_batch <= self.max_batch,
            f"{key}.opt_batch",
            f"need {key}.min_batch <= {key}.opt_batch <= {key}.max_batch, got "
            f"{self.min_batch}, {self.opt_batch}, {self.max_batch}",
        )
        require(self.workspace_mib >= 64, f"{key}.workspace_mib", f"must be >= 64, got {self.workspace_mib}")


@dataclass(frozen=True)
class ExportConfig:
    """ONNX / int8 / fp16 / TensorRT export of the listed models."""

    models: tuple[str, ...]
    opset: int
    parity_samples: int  # validation samples for the fp32 parity gate
    parity_atol: float  # max |torch - onnx| output difference
    min_agreement: float  # share of identical predictions
    int8: str  # dynamic | static | auto | none
    int8_max_drop: float  # auto: the largest validation-metric drop below fp32 an int8 graph may have
    calibration_samples: int  # validation samples static int8 calibrates on
    tensorrt: TensorRTConfig

    def validate(self, key: str) -> None:
        require(len(self.models) > 0, f"{key}.models", "list at least one model, e.g. [teacher, h2-amad]")
        require(self.opset >= 18, f"{key}.opset", f"must be >= 18, got {self.opset}")
        require(self.parity_samples >= 1, f"{key}.parity_samples", f"must be >= 1, got {self.parity_samples}")
        require(self.parity_atol > 0, f"{key}.parity_atol", f"must be > 0, got {self.parity_atol}")
        require(0 < self.min_agreement <= 1, f"{key}.min_agreement", f"must be in (0, 1], got {self.min_agreement}")
        require_choice(self.int8, INT8_MODES, f"{key}.int8")
        require(self.int8_max_drop >= 0, f"{key}.int8_max_drop", f"must be >= 0, got {self.int8_max_drop}")
        require(
            self.calibration_samples >= 1, f"{key}.calibration_samples", f"must be >= 1, got {self.calibration_samples}"
        )
