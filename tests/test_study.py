"""The multi-seed study: one dvc experiment per seed, aggregated; params.yaml is left as it was."""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from amad import experiments, study

REAL_RUN = subprocess.run


def git(*args):
    return REAL_RUN(["git", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git("init", "-q")
    Path("params.yaml").write_text("seed: 0\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "params")
    return tmp_path


def fake_dvc(calls):
    """Stands in for ``dvc exp run``: applies the overrides to params.yaml, stages it (as dvc does)
    and writes metrics/eval.json; the run for seed 2 fails."""

    def run(command, *args, **kwargs):
        if command[0] != "dvc":
            return REAL_RUN(command, *args, **kwargs)
        calls.append(command)
        overrides = [command[i + 1] for i, part in enumerate(command) if part == "-S"]
        Path("params.yaml").write_text("\n".join(overrides) + "\n")
        git("add", "params.yaml")
        seed = int(overrides[0].split("=")[1])
        Path("metrics").mkdir(exist_ok=True)
        Path("metrics/eval.json").write_text(json.dumps({"h2-amad": {"accuracy": 0.5 + 0.1 * seed}}))
        if seed == 2:
            raise subprocess.CalledProcessError(1, command)

    return run


@pytest.fixture(autouse=True)
def vqa_params(monkeypatch):
    """The fake repository's params.yaml is one line; the study only needs the task's metric."""
    task = SimpleNamespace(primary_metric="accuracy")
    monkeypatch.setattr(study, "load_params", lambda _path: SimpleNamespace(task_plugin=lambda: task))


def test_study_aggregates_seeds_and_restores_params(repo, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(experiments.subprocess, "run", fake_dvc(calls))
    study.main(["--seeds", "2", "--set", "distill.amad.temperature=0.5"])
    assert calls[1] == ["dvc", "exp", "run", "-S", "distill.seed=1", "-S", "distill.amad.temperature=0.5", "evaluate"]
    result = json.loads(Path("studies/study.json").read_text())
    assert result["accuracy"]["h2-amad"]["mean"] == pytest.approx(0.55)
    assert result["accuracy"]["h2-amad"]["runs"] == pytest.approx([0.5, 0.6])
    assert Path("params.yaml").read_text() == "seed: 0\n"
    assert git("status", "--porcelain", "params.yaml") == ""  # worktree and index as before
    assert "params.yaml restored" in capsys.readouterr().err


def test_a_failed_run_still_restores_params_and_an_unstaged_edit_stays_unstaged(repo, monkeypatch):
    Path("params.yaml").write_text("seed: 5\n")  # the user's own uncommitted change
    monkeypatch.setattr(experiments.subprocess, "run", fake_dvc([]))
    with pytest.raises(subprocess.CalledProcessError):
        study.main(["--seeds", "3"])
    assert Path("params.yaml").read_text() == "seed: 5\n"
    assert git("status", "--porcelain", "params.yaml") == " M params.yaml\n"
