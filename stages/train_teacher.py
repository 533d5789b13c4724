"""DVC stage `train_teacher`: params `task`, `teacher`, `train`, `seed` + data/prepared -> models/teacher/.

Runs single-process, or under `torchrun --nproc_per_node N stages/train_teacher.py`.
"""

from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.training.distributed import init_runtime, shutdown_runtime
from amad.training.jobs import train_teacher


def main(params: Params) -> None:
    runtime = init_runtime()
    try:
        result = train_teacher(
            params,
            paths.PREPARED,
            paths.TEACHER,
            runtime,
            checkpoint_dir=paths.CHECKPOINTS,
            log_dir=paths.LOGS / "teacher",
        )
        if runtime.is_main:
            metric = params.task_plugin().primary_metric
            print(f"teacher: val {metric} {result.final.get(f'val/{metric}', float('nan')):.4f}")
    finally:
        shutdown_runtime(runtime)


if __name__ == "__main__":
    run_stage(main)
