"""Peak resident memory of a piece of code, from Linux's ``VmHWM`` high-water mark.

Big tensors must be returned to the OS when freed for the high-water mark to mean anything, so
measurements run in a child process with a fixed ``MALLOC_MMAP_THRESHOLD_`` (which also makes
every large allocation page-fault, so that process is never used for timing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MMAP_THRESHOLD = "65536"


def available() -> bool:
    return _STATUS.exists() and _CLEAR_REFS.exists()


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in {_STATUS}")


def peak_extra_mib(function: Callable[[], object]) -> float | None:
    """Run ``function`` once; how far resident memory rose above its starting level (MiB).

    Returns None where ``/proc`` does not offer the high-water mark (non-Linux).
    """
    if not available():
        return None
    _CLEAR_REFS.write_text("5")  # reset VmHWM to the current RSS
    start = _status_kib("VmRSS")
    function()
    return max(_status_kib("VmHWM") - start, 0) / 1024


def measure_in_child(module: str, argv: list[str]) -> dict[str, float | None]:
    """Run ``python -m module *argv --memory-only`` under the mmap allocator; parse its JSON."""
    if not available():
        return {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": _MMAP_THRESHOLD}
    result = subprocess.run(
        [sys.executable, "-m", module, *argv, "--memory-only"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])
