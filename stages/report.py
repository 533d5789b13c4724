"""DVC stage `report`: metrics/eval.json + metrics/cost.json + metrics/training.json + metrics/latency_full.json + metrics/serving.json +
deployed/choice.json + exported/ + models/ -> reports/."""

import json

from amad.atomic import atomic_dir
from amad.config.params import Params
from amad.contracts.method import METHODS
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.report.summary import (
    alignment_pictures,
    attention_pictures,
    machine_line,
    serving_table,
    summary,
    tradeoff_picture,
    training_lines,
)


def main(params: Params) -> None:
    costs = json.loads(paths.COST.read_text())
    eval_metrics = {name: {**metrics, **costs[name]} for name, metrics in json.loads(paths.EVAL.read_text()).items()}
    latency = json.loads(paths.LATENCY_FULL.read_text())
    metric = params.task_plugin().primary_metric
    choice = json.loads(paths.DEPLOY_CHOICE.read_text())
    with atomic_dir(paths.REPORTS) as out:
        text, rows = summary(eval_metrics, latency, paths.EXPORTED, paths.MODELS, metric, choice)
        text += training_lines(json.loads(paths.TRAINING.read_text()))
        text += serving_table(json.loads(paths.SERVING.read_text()))
        (out / "accuracy_latency.json").write_text(json.dumps(rows, indent=2) + "\n")
        if rows:
            tradeoff_picture(rows, metric, machine_line(latency), out / "accuracy_latency.png", choice["model"])
        pictured = [choice["model"]] if choice["model"] not in (None, "teacher") else []
        for student in params.students:
            for method in params.distill.methods:
                name, artefact = f"{student}-{method}", METHODS.get(method, "distill.methods").artefact_file
                model_dir = paths.model_dir(name)
                if artefact is None or not (model_dir / artefact).exists():
                    continue
                alignment_pictures(model_dir / artefact, out / "alignment" / f"{name}.png")
                pictured.append(name)
        pictured = list(dict.fromkeys(pictured))
        for name in pictured:  # the deployed model's maps, and every AMAD student's
            attention_pictures(paths.TEACHER, paths.model_dir(name), paths.PREPARED, out / "attention" / name)
        students = {name: paths.model_dir(name) for name in params.model_names() if name != "teacher"}
        text += params.task_plugin().report_pages(
            paths.TEACHER, students, pictured, paths.PREPARED, out
        )  # fmt: skip
        (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run_stage(main)
