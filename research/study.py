"""Multi-seed study of the distillation matrix: mean +- std test accuracy per student and method.

Runs ``dvc exp run -S distill.seed=<s> [-S KEY=VALUE ...] evaluate`` once per seed (the data and
the teacher stay fixed, only student initialisation and data order change), reads each run's
``metrics/eval.json`` and prints the table; the runs stay visible in ``dvc exp show``.

``params.yaml`` is put back as the study found it (:func:`research.experiments.workspace_restored`).

    python -m research.study --seeds 3 [--set distill.amad.temperature=0.25] [--out studies/study.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from amad.atomic import write_json
from amad.config.params import load_params
from amad.pipeline import paths
from research.experiments import PARAMS, read_json, run_experiment, workspace_restored


def run_seed(seed: int, overrides: list[str]) -> dict:
    run_experiment([f"distill.seed={seed}", *overrides])
    return read_json(paths.EVAL)


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
    parser.add_argument("--out", default="studies/study.json")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        sys.exit("error: --seeds must be >= 1")
    metric = load_params(PARAMS).task_plugin().primary_metric
    with workspace_restored():
        runs = [run_seed(seed, args.set) for seed in range(args.seeds)]
    table = aggregate(runs, metric)
    write_json(args.out, {"seeds": args.seeds, "overrides": args.set, "metric": metric, metric: table})
    print(format_table(table, metric))


if __name__ == "__main__":
    main()
