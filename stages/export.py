"""DVC stage `export`: models listed in params `export.models` -> exported/<name>/ (ONNX, int8, fp16,
TensorRT where it can run, export.json with the graphs' and the torch model's test metrics by the
task's default evaluation); stage deploy picks the one to serve."""

from amad.config.params import Params
from amad.export.pipeline import export_model
from amad.pipeline import paths
from amad.pipeline.stage import run_stage


def main(params: Params) -> None:
    for name in params.export.models:
        report = export_model(name, paths.model_dir(name), paths.export_dir(name), paths.PREPARED, params.export)
        accuracy = ", ".join(f"{k} {v:.4f}" for k, v in report["accuracy"].items())
        print(f"{name}: {accuracy}; tensorrt: {report['tensorrt'].get('skipped', 'built')}")


if __name__ == "__main__":
    run_stage(main)
