"""`amad runs`: dvc exp show's runs as a table within 120 columns."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amad.cli import main
from amad.report.runs import Run, table

STAGE = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
tau = p["distill"]["amad"]["temperature"]
json.dump({"teacher": {"accuracy": 0.87}, "h2-amad": {"accuracy": round(0.7 + tau / 100, 4)}}, open("metrics/eval.json", "w"))
json.dump({"speedups": {"h2-amad_vs_teacher_onnxruntime_b1": 3.25}}, open("metrics/latency.json", "w"))
"""


def test_amad_runs_reads_dvc_exp_show_and_fits_120_columns(tmp_path, capsys, monkeypatch):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    monkeypatch.setenv("PATH", env["PATH"])

    def sh(*command):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)

    (tmp_path / "metrics").mkdir()
    (tmp_path / "stage.py").write_text(STAGE)
    params = {"seed": 0, "distill": {"amad": {"temperature": 1.0}, "minilm": {"heads": 4}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = {"metrics/eval.json": {"cache": False}}, {"metrics/latency.json": {"cache": False}}
    stage = {"cmd": "python stage.py", "deps": ["stage.py"], "params": ["distill.amad"], "metrics": list(metrics)}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    sh("dvc", "exp", "run", "-q", "-S", "distill.amad.temperature=0.5", "-n", "tau05")
    monkeypatch.chdir(tmp_path)
    main(["runs"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["workspace", "master", "tau05"] or lines[0].split()[1:] == ["master", "tau05"]
    rows = {line[:26].strip(): line[26:].split() for line in lines[1:]}
    assert rows["h2-amad accuracy"][-2:] == ["0.7100", "0.7050"]
    assert rows["h2-amad speed-up"][-1] == "3.2500"
    assert rows["distill.amad.temperature"][-2:] == ["1.0", "0.5"]
    assert "distill.minilm.heads" not in rows and "seed" not in rows, "unchanged params are not shown"
    assert max(len(line) for line in lines) <= 120


def test_many_runs_wrap_into_blocks_within_the_width():
    runs = [Run(f"exp-{i:02d}", {"h2-minilm accuracy": 0.8 + i / 1000}, {"distill.seed": i}) for i in range(25)]
    text = table(runs, width=120)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert text.count("h2-minilm accuracy") > 1 and "exp-24" in text and "0.8240" in text


@pytest.mark.parametrize("width", [60, 120, 200])
def test_long_labels_are_shortened_not_wrapped(width):
    runs = [Run("a", {"x" * 80: 1.0}), Run("b", {"x" * 80: 2.0})]
    assert max(len(line) for line in table(runs, width=width).splitlines()) <= width
