"""DVC stage `report`: metrics/eval.json + metrics/latency_full.json + metrics/serving.json + exported/ +
models/ -> reports/."""

import json
from pathlib import Path

from amad.atomic import atomic_dir
from amad.contracts.method import METHODS
from amad.params import Params
from amad.report import (
    alignment_pictures,
    attention_pictures,
    machine_line,
    serving_table,
    summary,
    tradeoff_picture,
)
from amad.stage import run_stage


def main(params: Params) -> None:
    eval_metrics = json.loads(Path("metrics/eval.json").read_text())
    latency = json.loads(Path("metrics/latency_full.json").read_text())
    metric = params.task_plugin().primary_metric
    with atomic_dir("reports") as out:
        text, rows = summary(eval_metrics, latency, Path("exported"), Path("models"), metric)
        text += serving_table(json.loads(Path("metrics/serving.json").read_text()))
        (out / "summary.md").write_text(text)
        (out / "accuracy_latency.json").write_text(json.dumps(rows, indent=2) + "\n")
        if rows:
            tradeoff_picture(rows, metric, machine_line(latency), out / "accuracy_latency.png")
        for student in params.students:
            for method in params.distill.methods:
                name, artefact = f"{student}-{method}", METHODS.get(method, "distill.methods").artefact_file
                model_dir = Path("models") / name
                if artefact is None or not (model_dir / artefact).exists():
                    continue
                alignment_pictures(model_dir / artefact, out / "alignment" / f"{name}.png")
                attention_pictures(Path("models/teacher"), model_dir, Path("data/prepared"), out / "attention" / name)
    print(text)


if __name__ == "__main__":
    run_stage(main)
