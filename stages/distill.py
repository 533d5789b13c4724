"""DVC stage `distill` (matrix student x method): params `students.<s>`, `distill.<method>`, the
shared `distill` keys, `seed`, `task` + models/teacher + data/prepared -> models/<student>-<method>/.

Usage: python -m stages.distill STUDENT METHOD   (or: torchrun ... -m stages.distill STUDENT METHOD)
"""

import argparse

from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.training.distributed import init_runtime, shutdown_runtime
from amad.training.jobs import distill_student


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("student")
    parser.add_argument("method")
    args = parser.parse_args()
    params.student(args.student)  # a clear error for an unknown student
    name = f"{args.student}-{args.method}"
    runtime = init_runtime()
    try:
        result = distill_student(
            params,
            args.student,
            args.method,
            paths.TEACHER,
            paths.PREPARED,
            paths.model_dir(name),
            runtime,
            checkpoint_dir=paths.CHECKPOINTS,
            log_dir=paths.LOGS / name,
        )
        if runtime.is_main:
            metric = params.task_plugin().primary_metric
            print(f"{name}: val {metric} {result.final.get(f'val/{metric}', float('nan')):.4f}")
    finally:
        shutdown_runtime(runtime)


if __name__ == "__main__":
    run_stage(main)
