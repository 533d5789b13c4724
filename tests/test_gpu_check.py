"""The one-run GPU check, as a dry run on the CPU: training parts run, CUDA parts say why they skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from research.gpu_check import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the CPU path")
def test_dry_run_on_the_cpu_trains_reloads_and_skips_the_cuda_parts(tmp_path):
    options = ["--params", str(ROOT / "params.yaml"), "--tiny", "--teacher-epochs", "2", "--distill-epochs", "2"]
    code = main(["--out", str(tmp_path), *options])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    assert report["training_device"] == "cpu"
    for part in ("train_teacher", "distill"):
        entry = report[part]
        assert entry["fell"] and entry["last_epoch_loss"] < entry["first_epoch_loss"]
        assert entry["reload"]["weight_dtypes"] == ["torch.float32"]
        assert 0 <= entry["reload"]["cpu_test_metric"] <= 1
    assert report["distill"]["model"] == "h2-amad"
    assert report["inherit_on_device"] == {"device": "cpu", "max_abs_diff": 0.0}
    assert report["checks"] and all(report["checks"].values()), report["checks"]
    for part in ("loss_parity", "fp16_agreement", "latency"):
        assert report[part] == {"skipped": "no CUDA device"}
    assert "GPU check: no CUDA device" in (tmp_path / "gpu_check.md").read_text()
