"""Per-epoch training checkpoints, kept outside DVC's outputs so an interrupted stage resumes.

A checkpoint holds model, optimiser, scheduler and objective states, the RNG state, the epoch,
and a fingerprint of the run's configuration: a checkpoint from a different configuration is
ignored (and the reason printed) rather than resumed. Saved with ``torch.save`` and read with
``torch.load(weights_only=True)``: tensors and plain containers only, no pickled objects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from amad.atomic import atomic_file


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-able configuration parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_file(path, "wb") as stream:
        torch.save(state, stream)


def load_checkpoint(path: str | Path, expected_fingerprint: str) -> tuple[dict[str, Any] | None, str]:
    """(state, message): state is None when there is nothing (compatible) to resume."""
    path = Path(path)
    if not path.exists():
        return None, ""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: start over, say why
        return None, f"ignoring unreadable checkpoint {path}: {error}"
    if state.get("fingerprint") != expected_fingerprint:
        return None, f"ignoring checkpoint {path}: it was written for a different configuration"
    return state, f"resumed from epoch {state['epoch']} ({path})"
