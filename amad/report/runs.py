"""``amad runs``: the runs ``dvc exp show`` knows, as the table a person compares, within a width.

``dvc exp show`` puts every parameter, metric and dependency hash in a column (255 columns for the
default pipeline). This reads its JSON (``dvc exp show --json``) and prints one column per run
(the baseline commit, the workspace, each experiment) and one row per quantity: each model's
primary metric (``metrics/eval.json``), each model's batch-1 speed-up over the teacher
(``metrics/latency.json``) and every parameter whose value differs between the runs. Runs that do
not fit the width continue in a second table below the first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field

from amad.errors import AmadError

METRIC_FILES = ("metrics/eval.json", "metrics/latency.json")  # the figures compared
SPEEDUP_SUFFIX = "_vs_teacher_onnxruntime_b1"


@dataclass
class Run:
    name: str
    metrics: dict[str, float | str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, object] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _metric_label(file: str, key: str) -> str:
    if file.endswith("latency.json") and key.startswith("speedups."):
        return f"{key.removeprefix('speedups.').removesuffix(SPEEDUP_SUFFIX)} speed-up"
    model, _, metric = key.rpartition(".")
    return f"{model} {metric}" if model else key


def _run(entry: dict, name: str, metric_files: tuple[str, ...] | None) -> Run | None:
    data = entry.get("data")
    if not data:
        return None
    run = Run(name)
    for file, content in (data.get("metrics") or {}).items():
        if metric_files is not None and file not in metric_files:
            continue
        for key, value in _flatten(content.get("data", {})).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                run.metrics[_metric_label(file, key)] = value
    for content in (data.get("params") or {}).values():
        run.params.update(_flatten(content.get("data", {})))
    return run


def read_runs(entries: list[dict], metric_files: tuple[str, ...] | None = METRIC_FILES) -> list[Run]:
    """``dvc exp show --json``'s entries as runs: workspace, each baseline and its experiments."""
    runs = []
    for entry in entries:
        rev = str(entry.get("rev", "?"))
        name = entry.get("name") or (rev if rev == "workspace" else rev[:7])
        run = _run(entry, name, metric_files)
        if run is not None:
            runs.append(run)
        for experiment in entry.get("experiments") or []:
            for revision in experiment.get("revs", [])[:1]:  # the experiment's newest revision
                run = _run(revision, revision.get("name") or str(revision.get("rev", "?"))[:7], metric_files)
                if run is not None:
                    runs.append(run)
    return runs


def _metric(value: object) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _param(value: object) -> str:
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def table(runs: list[Run], width: int = 120) -> str:
    """Rows: metrics, then the parameters that differ; columns: runs, wrapped into blocks of ``width``."""
    if not runs:
        return "no runs: commit, then dvc repro or dvc exp run\n"
    metric_rows = list(dict.fromkeys(key for run in runs for key in run.metrics))
    keys = dict.fromkeys(key for run in runs for key in run.params)
    changed = [key for key in keys if len({_param(run.params.get(key)) for run in runs}) > 1]
    rows = [(label, [_metric(run.metrics.get(label)) for run in runs]) for label in metric_rows]
    rows += [(key, [_param(run.params.get(key)) for run in runs]) for key in changed]
    label_width = min(max([len(label) for label, _ in rows] + [8]), width // 3)
    column = min(max([len(cell) for _, cells in rows for cell in cells] + [len(r.name) for r in runs] + [6]), 16)
    per_block = max(1, (width - label_width) // (column + 2))
    blocks = []
    for start in range(0, len(runs), per_block):
        names = [run.name[:column] for run in runs[start : start + per_block]]
        lines = [f"{'':<{label_width}}" + "".join(f"  {name:>{column}}" for name in names)]
        for label, cells in rows:
            shown = label if len(label) <= label_width else "…" + label[-(label_width - 1) :]
            lines.append(
                f"{shown:<{label_width}}"
                + "".join(f"  {cell[:column]:>{column}}" for cell in cells[start : start + per_block])
            )
        blocks.append("\n".join(lines))
    note = "" if changed else "\n(no parameter differs between these runs)"
    return "\n\n".join(blocks) + note + "\n"


def dvc_runs(extra: list[str] | None = None) -> list[dict]:
    """``dvc exp show --json`` of the repository in the working folder."""
    dvc = shutil.which("dvc")
    if dvc is None:
        raise AmadError("dvc not found on PATH (activate the venv: . .venv/bin/activate)")
    result = subprocess.run([dvc, "exp", "show", "--json", *(extra or [])], capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AmadError(f"dvc exp show failed: {tail[0]}")
    return json.loads(result.stdout)
