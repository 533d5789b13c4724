"""make compare: weights tuned on validation per method, then test over seeds (dvc runs stubbed)."""

import argparse
import json
from pathlib import Path

import pytest
import yaml
from helpers import tiny_params_dict

from amad.config.params import parse_params
from research import compare

# validation score of each method per attention weight (the same for every student), and per
# AMAD temperature at AMAD's best weight
VAL = {"one2one": {0.1: 0.50, 1.0: 0.70, 3.0: 0.60}, "amad": {0.1: 0.65, 1.0: 0.60, 3.0: 0.55}}
AMAD_TEMPERATURE = {0.25: 0.66, 4.0: 0.64}


def overrides_of(command: list[str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in command)


def applied(params: dict, settings: dict[str, str]) -> dict:
    """``params`` with dvc's ``-S key=value`` overrides (values in YAML)."""
    for key, value in settings.items():
        *path, last = key.split(".")
        section = params
        for part in path:
            section = section[part]
        section[last] = yaml.safe_load(value.replace("[", "[ ").replace(",", ", "))
    return params


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny_params_dict()
    params["distill"]["methods"] = ["none", "one2one", "amad"]
    params["students"]["h4"] = params["students"]["h2"]
    params["export"]["models"] = ["teacher", "h2-amad"]  # as the default profile
    params["deploy"]["model"] = "auto"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    latency = {
        "results": {
            "teacher": {"onnxruntime": {"1": {"p50_ms": 3.0}}},
            "h2-amad": {"onnxruntime": {"1": {"p50_ms": 1.0}}},
        }
    }
    Path("metrics").mkdir()
    Path("metrics/latency_full.json").write_text(json.dumps(latency))
    return tmp_path


def fake_run(calls):
    """Writes what the real runs would: validation logs of the distilled models (``distill``), test
    metrics of the teacher and the listed models (``evaluate``)."""

    def run(command: list[str], target: str) -> None:
        calls.append((command, target))
        settings = overrides_of(command)
        parse_params(applied(yaml.safe_load(Path("params.yaml").read_text()), settings))  # what dvc would run
        methods = settings["distill.methods"].strip("[]").split(",")
        weight = float(settings.get("distill.weights.attention", 1.0))
        seed = int(settings["distill.seed"])
        for student in ("h2", "h4"):
            for method in methods:
                if "distill.amad.temperature" in settings and target == "distill":
                    val = AMAD_TEMPERATURE[float(settings["distill.amad.temperature"])]
                else:
                    val = VAL.get(method, {}).get(weight, 0.4)
                log = Path("logs") / f"{student}-{method}"
                log.mkdir(parents=True, exist_ok=True)
                (log / "metrics.json").write_text(json.dumps({"val": {"accuracy": val}, "step": 2}))
                series = log / "plots" / "metrics"
                series.mkdir(parents=True, exist_ok=True)
                took = 10.0 + seed + (20.0 if method == "amad" else 0.0)  # two epochs: 2 x this
                (series / "train_seconds.tsv").write_text(f"step\ttrain_seconds\n0\t{took}\n1\t{took}\n")
        if target == "evaluate":
            metrics = {"teacher": {"accuracy": 0.9}}
            for student in ("h2", "h4"):
                for method in methods:
                    metrics[f"{student}-{method}"] = {"accuracy": 0.5 + 0.01 * seed + (0.1 if method == "amad" else 0)}
            Path("metrics/eval.json").write_text(json.dumps(metrics))

    return run


def test_each_method_keeps_its_best_validation_weight_and_is_tested_over_seeds(workspace):
    calls = []
    args = argparse.Namespace(
        seeds=2, weights=[0.1, 1.0, 3.0], temperatures=[0.25, 1.0, 4.0], set=["distill.train.lr=0.002"]
    )
    result = compare.compare(args, run=fake_run(calls))
    grid_runs = [settings for settings, target in calls if target == "distill"]
    assert len(grid_runs) == 3 + 2  # three weights for both tuned methods, two more AMAD temperatures
    assert all("distill.seed=0" in run and "distill.train.lr=0.002" in run for run in grid_runs)
    assert result["choices"] == {
        "none": {},
        "one2one": {"distill.weights.attention": 1.0},
        "amad": {"distill.weights.attention": 0.1, "distill.amad.temperature": 0.25},
    }
    assert result["validation"] == {"one2one": 0.70, "amad": 0.66}
    assert result["grid"]["amad"]["distill.amad.temperature"] == {0.25: 0.66, 1.0: 0.65, 4.0: 0.64}
    test_runs = [overrides_of(settings) for settings, target in calls if target == "evaluate"]
    assert len(test_runs) == 2 * 3  # seeds x the three distinct settings
    amad_runs = [run for run in test_runs if run["distill.methods"] == "[amad]"]
    assert [run["distill.seed"] for run in amad_runs] == ["0", "1"]
    assert amad_runs[0]["distill.amad.temperature"] == "0.25" and amad_runs[0]["distill.weights.attention"] == "0.1"
    row = result["table"]["h2"]["amad"]
    assert row["runs"] == pytest.approx([0.6, 0.61]) and row["mean"] == pytest.approx(0.605)
    assert result["teacher"]["mean"] == pytest.approx(0.9)
    assert result["latency"]["h2"]["speedup"] == pytest.approx(3.0) and result["latency"]["h4"] is None
    report = compare.format_report(result)
    assert (
        "| h2 | amad | attention=0.1, temperature=0.25 | 0.6600 | 0.6050 ± 0.0071 | -0.2950 | 61 | 1.000 | 3.00x |"
        in report
    )
    assert result["training_seconds"]["h2"] == {
        "none": 21.0,
        "one2one": 21.0,
        "amad": 61.0,
    }  # sum of epochs, mean of seeds
    assert "| h4 | none | - | - |" in report


def test_set_overrides_are_what_compare_plans_with(workspace):
    """``--set distill.methods=[...]`` picks the methods compared (as the runs see it), and an
    overridden AMAD temperature is the grid's starting point."""
    calls = []
    args = argparse.Namespace(
        seeds=1,
        weights=[0.1, 1.0],
        temperatures=[0.25, 4.0],
        set=["distill.methods=[amad]", "distill.amad.temperature=4"],
    )
    result = compare.compare(args, run=fake_run(calls))
    assert {overrides_of(settings)["distill.methods"] for settings, _ in calls} == {"[amad]"}
    assert len([1 for _, target in calls if target == "distill"]) == 2 + 1  # two weights, one more temperature
    assert set(result["table"]["h2"]) == {"amad"} and set(result["choices"]) == {"amad"}
    assert set(result["grid"]["amad"]["distill.amad.temperature"]) == {0.25, 4.0}
    # methods whose students params.yaml does not export (its export.models holds h2-amad)
    args.set = ["distill.methods=[one2one]"]
    assert set(compare.compare(args, run=fake_run([]))["choices"]) == {"one2one"}


def test_a_bad_set_override_names_its_key(workspace):
    from amad.errors import ConfigError

    args = argparse.Namespace(seeds=1, weights=[1.0], temperatures=[], set=["distill.methods.x=[amad]"])
    with pytest.raises(ConfigError, match=r"distill\.methods"):
        compare.compare(args, run=fake_run([]))


def test_ties_go_to_the_smaller_setting_and_bad_grids_are_refused():
    assert compare.best({3.0: 0.5, 0.1: 0.5, 1.0: 0.4}) == 0.1
    with pytest.raises(argparse.ArgumentTypeError, match="> 0"):
        compare._numbers("0.1,0")
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
        compare._numbers("0.1;1")


def test_a_task_that_shuffles_images_gets_an_image_drop_column(workspace):
    inner = fake_run([])

    def run(command: list[str], target: str) -> None:
        inner(command, target)
        if target == "evaluate":  # as translation's breakdown: BLEU lost with the images shuffled
            models = json.loads(Path("metrics/eval.json").read_text())
            drops = {model: {"shuffled_images": {"image_drop": 2.0 if model == "teacher" else 0.5}} for model in models}
            Path("metrics/breakdown.json").write_text(json.dumps(drops))

    args = argparse.Namespace(seeds=2, weights=[0.1, 1.0], temperatures=[], set=[])
    result = compare.compare(args, run=run)
    assert result["teacher_image_drop"]["mean"] == 2.0 and result["image_drop"]["h2"]["amad"]["runs"] == [0.5, 0.5]
    report = compare.format_report(result)
    assert "| image drop (shuffled images) |" in report and "Teacher's image drop: 2.0000 ± 0.0000." in report
    assert "| -0.2950 | 0.5000 ± 0.0000 | 61 |" in report
