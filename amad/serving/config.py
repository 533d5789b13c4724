"""``serving`` (the load test of the served model) and ``deploy`` (which model is served): torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import child, require


@dataclass(frozen=True)
class ServingConfig:
    """``serving``: the load test of the deployed model (``deployed/model``), stage ``loadtest``."""

    concurrency: tuple[int, ...]  # concurrent clients, one level after the other
    duration_s: float  # seconds per level
    timeout_s: float  # seconds one request may take
    max_requests: int  # at most this many requests per level

    def validate(self, key: str) -> None:
        require(len(self.concurrency) > 0, f"{key}.concurrency", "list at least one level, e.g. [1, 4, 16]")
        for index, level in enumerate(self.concurrency):
            require(level >= 1, child(f"{key}.concurrency", index), f"must be >= 1, got {level}")
        require(self.duration_s > 0, f"{key}.duration_s", f"must be > 0, got {self.duration_s}")
        require(self.timeout_s > 0, f"{key}.timeout_s", f"must be > 0, got {self.timeout_s}")
        require(self.max_requests >= 1, f"{key}.max_requests", f"must be >= 1, got {self.max_requests}")


AUTO = "auto"


@dataclass(frozen=True)
class DeployConfig:
    """``deploy``: the one model the ``deploy`` stage puts in ``deployed/`` (after the benchmark).

    ``model: auto`` applies the rule of :func:`amad.serving.choice.choose`: of the exported students,
    the fastest (ONNX Runtime, batch 1) whose primary metric is within ``tolerance`` of the best
    exported student's; ``model: <name>`` deploys that one of ``export.models``; ``null`` none.
    """

    model: str | None
    tolerance: float  # in the primary metric's units: 0.01 is one point of accuracy or recall

    def validate(self, key: str) -> None:
        require(self.tolerance >= 0, f"{key}.tolerance", f"must be >= 0, got {self.tolerance}")
