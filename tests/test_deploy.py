"""Which model is deployed (amad.serving.choice) and `amad check`."""

import pytest
import yaml

from amad.cli import main
from amad.errors import AmadError
from amad.serving.choice import choose
from amad.serving.config import DeployConfig

EVAL = {
    "teacher": {"accuracy": 0.90},
    "h4-a": {"accuracy": 0.860},
    "h4-b": {"accuracy": 0.852},
    "h2-a": {"accuracy": 0.849},
    "h2-b": {"accuracy": 0.800},
}


def latency(**p50: float) -> dict:
    return {"results": {name.replace("_", "-"): {"onnxruntime": {"1": {"p50_ms": ms}}} for name, ms in p50.items()}}


TIMES = latency(teacher=3.0, h4_a=1.2, h4_b=1.0, h2_a=0.9, h2_b=0.5)


def test_auto_deploys_the_fastest_student_within_the_tolerance_of_the_best():
    exported = list(EVAL)
    assert choose(EVAL, TIMES, "accuracy", exported, DeployConfig("auto", 0.01))["model"] == "h4-b"  # h2-a 0.849 < 0.85
    assert choose(EVAL, TIMES, "accuracy", exported, DeployConfig("auto", 0.02))["model"] == "h2-a"
    assert choose(EVAL, TIMES, "accuracy", exported, DeployConfig("auto", 0.0))["model"] == "h4-a"
    assert choose(EVAL, TIMES, "accuracy", exported, DeployConfig("auto", 0.1))["model"] == "h2-b"
    choice = choose(EVAL, TIMES, "accuracy", exported, DeployConfig("auto", 0.02))
    assert "within 0.02" in choice["reason"] and "0.8490 (best 0.8600) at 0.900 ms" in choice["reason"]
    assert [c["model"] for c in choice["candidates"]] == exported


def test_only_exported_and_benchmarked_students_count_and_the_teacher_is_the_fallback():
    assert choose(EVAL, TIMES, "accuracy", ["teacher", "h2-b"], DeployConfig("auto", 0.01))["model"] == "h2-b"
    unmeasured = {"results": {"teacher": TIMES["results"]["teacher"]}}
    choice = choose(EVAL, unmeasured, "accuracy", ["teacher", "h4-a"], DeployConfig("auto", 0.01))
    assert choice["model"] == "teacher" and "no exported student was benchmarked" in choice["reason"]


def test_a_tie_in_latency_goes_to_the_better_metric_and_multi_graph_latencies_add_up():
    times = {
        "results": {
            "h4-a.image": {"onnxruntime": {"1": {"p50_ms": 0.5}}},
            "h4-a.text": {"onnxruntime": {"1": {"p50_ms": 0.5}}},
            "h4-b": {"onnxruntime": {"1": {"p50_ms": 1.0}}},
        }
    }
    choice = choose(EVAL, times, "accuracy", ["h4-a", "h4-b"], DeployConfig("auto", 0.05))
    assert choice["model"] == "h4-a" and choice["candidates"][0]["latency_ms"] == 1.0


def test_named_and_null_and_an_unevaluated_model():
    assert choose(EVAL, TIMES, "accuracy", list(EVAL), DeployConfig("h4-b", 0.01))["model"] == "h4-b"
    assert choose(EVAL, TIMES, "accuracy", list(EVAL), DeployConfig(None, 0.01))["model"] is None
    with pytest.raises(AmadError, match=r"metrics/eval\.json has no 'h9'"):
        choose(EVAL, TIMES, "accuracy", ["h9"], DeployConfig("auto", 0.01))


def test_amad_check_validates_a_params_file_and_names_the_bad_key(tmp_path, capsys, monkeypatch):
    from helpers import ROOT

    monkeypatch.chdir(ROOT)
    main(["check", "--structure-only"])
    assert "params.yaml: valid (structure; task vqa" in capsys.readouterr().out
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["deploy"]["model"] = "h9-amad"
    bad = tmp_path / "mine.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stopped:
        main(["check", str(bad), "--structure-only"])
    assert stopped.value.code == 2
    assert f"{bad}: deploy.model" in capsys.readouterr().err
