"""DVC stage `evaluate`: every model (params `students`, `distill.methods`) -> metrics/eval.json.

metrics/eval.json holds accuracy, params and GFLOPs per model (what `dvc exp show` displays);
metrics/families.json the per-question-family accuracies.
"""

from pathlib import Path

from amad.atomic import write_json
from amad.config import Params
from amad.data.dataset import VQADataset
from amad.evaluation import evaluate_model, model_cost
from amad.models import load_model
from amad.stage import run_stage


def main(params: Params) -> None:
    metrics, families = {}, {}
    for name in params.model_names():
        loaded = load_model(Path("models") / name)
        test_set = VQADataset("data/prepared", "test", loaded.preprocess, loaded.answers)
        report = evaluate_model(loaded.model, test_set)
        cost = model_cost(loaded.model, loaded.preprocess.image_size, loaded.preprocess.context_length)
        metrics[name] = {
            "accuracy": round(report["accuracy"], 4),
            "params": cost["params"],
            "gflops": round(cost["gflops"], 4),
        }
        families[name] = report["families"]
        print(
            f"{name:>16s}: accuracy {report['accuracy']:.4f}, {cost['params'] / 1e6:.2f}M params, "
            f"{cost['gflops']:.4f} GFLOPs"
        )
    write_json("metrics/eval.json", metrics)
    write_json("metrics/families.json", families)


if __name__ == "__main__":
    run_stage(main)
