"""``serving``: the load test of the served model (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import child, require


@dataclass(frozen=True)
class ServingConfig:
    """``serving``: the load test of the served model (``export.triton_model``), stage ``loadtest``."""

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
