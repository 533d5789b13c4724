"""The multi-seed study: one dvc experiment per seed, aggregated; params.yaml is left as it was."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from research import experiments, study

REAL_RUN = subprocess.run
REAL_POPEN = subprocess.Popen


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
    """Stands in for ``dvc exp run`` (``subprocess.Popen``): applies the overrides to params.yaml,
    stages it (as dvc does) and writes metrics/eval.json; the run for seed 2 fails."""

    class Run:
        def __init__(self, command):
            self.args = command

        def wait(self, timeout=None):
            calls.append(self.args)
            overrides = [self.args[i + 1] for i, part in enumerate(self.args) if part == "-S"]
            Path("params.yaml").write_text("\n".join(overrides) + "\n")
            git("add", "params.yaml")
            seed = int(overrides[0].split("=")[1])
            Path("metrics").mkdir(exist_ok=True)
            Path("metrics/eval.json").write_text(json.dumps({"h2-amad": {"accuracy": 0.5 + 0.1 * seed}}))
            return 1 if seed == 2 else 0

    def popen(command, *args, **kwargs):
        return Run(command) if command[0] == "dvc" else REAL_POPEN(command, *args, **kwargs)

    return popen


@pytest.fixture(autouse=True)
def vqa_params(monkeypatch):
    """The fake repository's params.yaml is one line; the study only needs the task's metric."""
    task = SimpleNamespace(primary_metric="accuracy")
    monkeypatch.setattr(study, "load_params", lambda _path: SimpleNamespace(task_plugin=lambda: task))


def test_study_aggregates_seeds_and_restores_params(repo, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(experiments.subprocess, "Popen", fake_dvc(calls))
    study.main(["--seeds", "2", "--set", "distill.amad.temperature=0.5"])
    assert calls[1] == ["dvc", "exp", "run", "-S", "distill.seed=1", "-S", "distill.amad.temperature=0.5", "evaluate"]
    result = json.loads(Path("studies/study.json").read_text())
    assert result["accuracy"]["h2-amad"]["mean"] == pytest.approx(0.55)
    assert result["accuracy"]["h2-amad"]["runs"] == pytest.approx([0.5, 0.6])
    assert Path("params.yaml").read_text() == "seed: 0\n"
    assert git("status", "--porcelain", "params.yaml") == ""  # worktree and index as before
    assert "restored params.yaml" in capsys.readouterr().err


def test_a_failed_run_still_restores_params_and_an_unstaged_edit_stays_unstaged(repo, monkeypatch):
    Path("params.yaml").write_text("seed: 5\n")  # the user's own uncommitted change
    monkeypatch.setattr(experiments.subprocess, "Popen", fake_dvc([]))
    with pytest.raises(subprocess.CalledProcessError):
        study.main(["--seeds", "3"])
    assert Path("params.yaml").read_text() == "seed: 5\n"
    assert git("status", "--porcelain", "params.yaml") == " M params.yaml\n"


FAKE_DVC = """#!{python}
import pathlib, signal, sys, time

def stop(*_):  # dvc's own cleanup on an interrupt: it takes a moment, then puts the workspace back
    time.sleep(0.3)
    pathlib.Path("stopped").write_text("cleaned up")
    sys.exit(255)

signal.signal(signal.SIGINT, stop)
pathlib.Path("started").write_text("")
time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_tool_lets_dvc_stop_on_its_own_and_restores_params(repo, monkeypatch, signum):
    """Killed mid-run (as ``subprocess.run`` does on Ctrl-C), dvc left HEAD detached and dvc.lock staged."""
    bin_dir = repo / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(FAKE_DVC.format(python=sys.executable))
    (bin_dir / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def interrupt_once_dvc_runs():
        while not Path("started").exists():
            time.sleep(0.01)
        Path("params.yaml").write_text("seed: 9\n")  # what dvc exp run -S does
        os.kill(os.getpid(), signum)  # to this process only: dvc gets SIGINT from the tool

    threading.Thread(target=interrupt_once_dvc_runs, daemon=True).start()
    with pytest.raises(KeyboardInterrupt), experiments.workspace_restored():
        experiments.run_experiment(["seed=9"], grace_s=0.1)
    assert Path("stopped").read_text() == "cleaned up"  # dvc finished its cleanup before the tool went
    assert Path("params.yaml").read_text() == "seed: 0\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the tool's handler is gone again


def test_what_a_killed_dvc_leaves_is_put_back(repo, capsys):
    Path("dvc.lock").write_text("schema: '2.0'\n")  # the workspace's own, untracked
    branch = git("symbolic-ref", "HEAD").strip()
    with experiments.workspace_restored():
        git("add", "dvc.lock")  # what dvc exp run killed mid-run leaves: the lock staged, HEAD detached
        git("checkout", "-q", "--detach")
    assert git("symbolic-ref", "HEAD").strip() == branch
    assert git("ls-files", "--", "dvc.lock") == ""  # untracked again, and still there
    assert Path("dvc.lock").exists()
    assert "restored dvc.lock's index entry, HEAD" in capsys.readouterr().err


def test_a_head_moved_elsewhere_is_left_alone(repo):
    with experiments.workspace_restored():
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "other")
        git("checkout", "-q", "--detach")  # detached at a commit its branch points to, but not the start
    assert REAL_RUN(["git", "symbolic-ref", "-q", "HEAD"]).returncode != 0
