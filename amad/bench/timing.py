"""Timing in interleaved rounds: on a shared, noisy machine a slow spell falls on every case alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def interleaved_ms(cases: dict[Key, Callable[[], object]], *, warmup: int, repeats: int) -> dict[Key, list[float]]:
    """Milliseconds of each case in ``repeats`` rounds, every round timing each case once, so that a
    slow spell of a shared machine falls on all cases alike (compare cases within a round)."""
    for step in cases.values():
        for _ in range(warmup):
            step()
    times: dict[Key, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, step in cases.items():
            start = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times
