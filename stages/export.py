"""DVC stage `export`: models listed in params `export.models` -> exported/<name>/ and the Triton
model repository exported/triton/ (for `export.triton_model`)."""

from pathlib import Path

from amad.export.pipeline import export_model
from amad.params import Params
from amad.serving.repository import write_model_repository
from amad.stage import run_stage


def main(params: Params) -> None:
    for name in params.export.models:
        report = export_model(
            name, Path("models") / name, Path("exported") / name, Path("data/prepared"), params.export
        )
        accuracy = ", ".join(f"{k} {v:.4f}" for k, v in report["accuracy"].items())
        print(f"{name}: {accuracy}; tensorrt: {report['tensorrt'].get('skipped', 'built')}")
    if params.export.triton_model:
        write_model_repository(
            Path("exported") / params.export.triton_model,
            Path("exported/triton"),
            max_batch=params.export.tensorrt.max_batch,
        )


if __name__ == "__main__":
    run_stage(main)
