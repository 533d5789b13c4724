"""Multi-seed study of the distillation matrix: mean +- std test accuracy per student and method.

Runs ``dvc exp run -S distill.seed=<s> [-S KEY=VALUE ...] evaluate`` once per seed (the data and
the teacher stay fixed, only student initialisation and data order change), reads each run's
``metrics/eval.json`` and prints the table; the runs stay visible in ``dvc exp show``.

``dvc exp run`` leaves the last run's parameters in the workspace's ``params.yaml``; the study puts
the file back as it found it, so the overrides of one study never leak into the next one (or into
``dvc repro``, which then brings the outputs back in line with ``params.yaml``).

    python -m amad.study --seeds 3 [--set distill.amad.temperature=0.25] [--out reports/study.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from amad.atomic import write_json
from amad.params import load_params

PARAMS = Path("params.yaml")


def _index_entry(path: Path) -> str | None:
    """``mode,blob,path`` of ``path`` in git's index (None outside a git work tree)."""
    listed = subprocess.run(["git", "ls-files", "-s", "--", str(path)], capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        return None
    mode, blob, _stage = listed.stdout.split("\t")[0].split()
    return f"{mode},{blob},{path}"


def run_seed(seed: int, overrides: list[str]) -> dict:
    command = ["dvc", "exp", "run", "-S", f"distill.seed={seed}"]
    for override in overrides:
        command += ["-S", override]
    subprocess.run([*command, "evaluate"], check=True)
    return json.loads(Path("metrics/eval.json").read_text())


def aggregate(runs: list[dict], metric: str) -> dict[str, dict[str, float]]:
    """Mean, sample std and values of ``metric`` (the task's primary metric) per model over the runs."""
    table = {}
    for model in runs[0]:
        values = [run[model][metric] for run in runs]
        table[model] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values,
        }
    return table


def format_table(table: dict[str, dict[str, float]], metric: str) -> str:
    lines = [f"| model | {metric} (mean ± std) | runs |", "|---|---|---|"]
    for model, row in table.items():
        runs = ", ".join(f"{v:.4f}" for v in row["runs"])
        lines.append(f"| {model} | {row['mean']:.4f} ± {row['std']:.4f} | {runs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override")
    parser.add_argument("--out", default="reports/study.json")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        sys.exit("error: --seeds must be >= 1")
    metric = load_params(PARAMS).task_plugin().primary_metric
    original, staged = PARAMS.read_text(), _index_entry(PARAMS)
    try:
        runs = [run_seed(seed, args.set) for seed in range(args.seeds)]
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
    table = aggregate(runs, metric)
    write_json(args.out, {"seeds": args.seeds, "overrides": args.set, "metric": metric, metric: table})
    print(format_table(table, metric))


if __name__ == "__main__":
    main()
