"""The AMAD alignment temperature ``tau``: fixed, scheduled over training, or learned."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from amad.losses.options import TEMPERATURE_SCHEDULES


class AlignmentTemperature(nn.Module):
    """Alignment softmax temperature.

    Args:
        initial: ``tau`` at the start of training (the paper uses 1.0).
        schedule: ``"constant"``; ``"linear"`` or ``"cosine"`` from ``initial`` to ``final`` over
            training progress (see :meth:`set_progress`); or ``"learned"``, a trainable
            ``log tau`` initialised at ``initial``.
        final: end value for the scheduled variants.
        minimum: lower bound of a learned temperature.
    """

    def __init__(
        self,
        initial: float = 1.0,
        *,
        schedule: str = "constant",
        final: float | None = None,
        minimum: float = 1e-2,
    ) -> None:
        super().__init__()
        if schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"temperature schedule must be one of {TEMPERATURE_SCHEDULES}, got {schedule!r}")
        if not initial > 0:
            raise ValueError(f"temperature must be > 0, got {initial}")
        if schedule in ("linear", "cosine") and not (final is not None and final > 0):
            raise ValueError(f"temperature schedule {schedule!r} needs a final temperature > 0, got {final}")
        self.schedule = schedule
        self.initial = float(initial)
        self.final = float(final) if final is not None else float(initial)
        self.minimum = float(minimum)
        self.progress = 0.0
        self.log_temperature = nn.Parameter(torch.tensor(math.log(initial))) if schedule == "learned" else None

    def set_progress(self, fraction: float) -> None:
        """Training progress in ``[0, 1]`` (drives the scheduled variants)."""
        self.progress = min(max(float(fraction), 0.0), 1.0)

    def value(self) -> float:
        """Current temperature as a Python float (for logging)."""
        return float(self().detach()) if self.log_temperature is not None else self._scheduled()

    def _scheduled(self) -> float:
        if self.schedule == "linear":
            return self.initial + (self.final - self.initial) * self.progress
        if self.schedule == "cosine":
            return self.final + (self.initial - self.final) * 0.5 * (1 + math.cos(math.pi * self.progress))
        return self.initial

    def forward(self) -> Tensor | float:
        """The temperature: a tensor with gradient when learned, else a float."""
        if self.log_temperature is not None:
            return self.log_temperature.exp().clamp_min(self.minimum)
        return self._scheduled()

    def extra_repr(self) -> str:
        return f"schedule={self.schedule}, initial={self.initial}, final={self.final}"
