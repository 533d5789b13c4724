"""Running ``dvc exp run`` from amad's own tools (``make study``, ``make compare``) without leaking
their overrides into the workspace.

``dvc exp run -S KEY=VALUE`` leaves the last run's parameters in the workspace's ``params.yaml``
(and stages the file); :func:`params_restored` puts the file and its index entry back as they
were, so one tool's overrides never reach the next run or ``dvc repro``. The runs stay visible in
``dvc exp show``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARAMS = Path("params.yaml")


def _index_entry(path: Path) -> str | None:
    """``mode,blob,path`` of ``path`` in git's index (None outside a git work tree)."""
    listed = subprocess.run(["git", "ls-files", "-s", "--", str(path)], capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        return None
    mode, blob, _stage = listed.stdout.split("\t")[0].split()
    return f"{mode},{blob},{path}"


@contextmanager
def params_restored() -> Iterator[None]:
    """Restore ``params.yaml`` (contents and git index entry) on the way out, even after a failure."""
    original, staged = PARAMS.read_text(), _index_entry(PARAMS)
    try:
        yield
    finally:
        if PARAMS.read_text() != original or _index_entry(PARAMS) != staged:
            PARAMS.write_text(original)
            if staged is not None:  # dvc stages the file; a stale index entry breaks the next dvc exp run
                subprocess.run(["git", "update-index", "--cacheinfo", staged], check=True)
            print(
                "params.yaml restored (the experiments keep theirs: dvc exp show); the outputs in the "
                "workspace are the last run's until the next dvc repro",
                file=sys.stderr,
            )


def run_experiment(overrides: list[str], target: str = "evaluate") -> None:
    """``dvc exp run -S <override> ... <target>`` in the workspace (its outputs land there)."""
    command = ["dvc", "exp", "run"]
    for override in overrides:
        command += ["-S", override]
    subprocess.run([*command, target], check=True)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
