"""DVC stage `export`: models listed in params `export.models` -> exported/<name>/ and the Triton
model repository exported/triton/ (for `export.triton_model`)."""

from amad.config.params import Params
from amad.export.pipeline import export_model
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.serving.repository import write_model_repository


def main(params: Params) -> None:
    for name in params.export.models:
        report = export_model(name, paths.model_dir(name), paths.export_dir(name), paths.PREPARED, params.export)
        accuracy = ", ".join(f"{k} {v:.4f}" for k, v in report["accuracy"].items())
        print(f"{name}: {accuracy}; tensorrt: {report['tensorrt'].get('skipped', 'built')}")
    if params.export.triton_model:
        write_model_repository(
            paths.export_dir(params.export.triton_model),
            paths.TRITON_REPOSITORY,
            max_batch=params.export.tensorrt.max_batch,
        )


if __name__ == "__main__":
    run_stage(main)
