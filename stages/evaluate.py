"""DVC stage `evaluate`: every model (params `students`, `distill.methods`, `evaluate`) -> metrics/eval.json.

metrics/eval.json (a DVC metric: what `dvc exp show` and `amad runs` display) holds each model's
primary metric (VQA: accuracy) alone; metrics/training.json how each model's
training ended (epochs run, best epoch, still improving at the cap); metrics/cost.json its
parameter count and GFLOPs (static facts, not compared as metrics); metrics/breakdown.json the
task's breakdown (VQA: per question family).
"""

from amad.atomic import write_json
from amad.config.params import Params
from amad.models import load_model
from amad.models.evaluation import evaluate_model, model_cost
from amad.pipeline import paths
from amad.pipeline.stage import run_stage


def main(params: Params) -> None:
    metrics, costs, breakdowns, training = {}, {}, {}, {}
    for name in params.model_names():
        loaded = load_model(paths.model_dir(name))
        task = loaded.task
        test_set = task.dataset(paths.PREPARED, "test", loaded.preprocess, loaded.state)
        report = evaluate_model(task, loaded.model, test_set, settings=params.evaluate)
        cost = model_cost(loaded.model, task.example_inputs(loaded.preprocess, 1))
        primary = report[task.primary_metric]
        metrics[name] = {task.primary_metric: round(primary, 4)}
        costs[name] = {"params": cost["params"], "gflops": round(cost["gflops"], 4)}
        ending = loaded.extra.get("training") or {}  # model folders of older versions: not recorded
        training[name] = {k: ending[k] for k in ("epochs_run", "best_epoch", "still_improving") if k in ending}
        breakdowns[name] = report["breakdown"]
        print(
            f"{name:>16s}: {task.primary_metric} {primary:.4f}, {cost['params'] / 1e6:.2f}M params, "
            f"{cost['gflops']:.4f} GFLOPs"
        )
    write_json(paths.EVAL, metrics)
    write_json(paths.COST, costs)
    write_json(paths.TRAINING, training)
    write_json(paths.BREAKDOWN, breakdowns)


if __name__ == "__main__":
    run_stage(main)
