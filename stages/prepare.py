"""DVC stage `prepare`: the data source (params `task`, `data`, `seed`; the folder `data.path`) -> data/prepared/.

Refuses, before writing anything, a training split smaller than one training batch.
"""

from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage


def main(params: Params) -> None:
    task = params.task_plugin()
    batch_sizes = {
        "train.batch_size": params.train.batch_size,
        "distill.train.batch_size": params.distill.train.batch_size,
    }
    task.prepare(
        params.data,
        params.seed,
        paths.PREPARED,
        check_splits=lambda sizes: task.check_batch_sizes(sizes, batch_sizes),
    )


if __name__ == "__main__":
    run_stage(main)
