"""The summary table: the deployed model, what was not measured."""

from helpers import TASK, tiny_model_config

from amad.models import save_model
from amad.report.summary import summary
from amad.tasks.vqa.model import VQAModel


def test_summary_names_an_unbenchmarked_more_accurate_student(tmp_path):
    models, exported = tmp_path / "models", tmp_path / "exported"
    model = VQAModel(tiny_model_config(heads=2), 3)
    for name in ("teacher", "s-amad", "s-one2one"):
        save_model(models / name, TASK, model, {"answers": ["a", "b", "c"]}, model.preprocess)
    evals = {
        name: {"accuracy": acc, "params": 1e6, "gflops": 0.1}
        for name, acc in [("teacher", 0.9), ("s-amad", 0.7), ("s-one2one", 0.8)]
    }
    point = {"p50_ms": 1.0}
    failed = {"1": {"skipped": "failed at batch 1: RuntimeError: CUDA graph capture failed"}}
    latency = {
        "settings": {"batch_sizes": [1]},
        "results": {
            "teacher": {"onnxruntime": {"1": {"p50_ms": 3.0}}, "torch_cuda_fp16_graph": {"1": {"p50_ms": 0.4}}},
            "s-amad": {
                "onnxruntime": {"1": point},
                "torch_cuda_fp16_graph": failed,
                "tensorrt": {"skipped": "no CUDA"},
            },
        },
    }
    choice = {"model": "s-amad", "reason": "the fastest exported student (...)"}
    text, rows = summary(evals, latency, exported, models, "accuracy", choice)
    assert "**Deployed:** `s-amad` in `deployed/` — the fastest exported student (...)" in text
    assert "`s-amad`" in text and "3.00x" in text and "| 2/2/2/2 |" in text
    assert "torch_cuda_fp16_graph on s-amad: failed at batch 1: RuntimeError: CUDA graph capture failed" in text
    assert "tensorrt: no CUDA" in text
    assert "The best student by accuracy, `s-one2one` (0.8000), was not benchmarked" in text
    assert [r["model"] for r in rows] == ["teacher", "s-amad"]


def test_serving_table_reads_the_load_test_or_says_why_it_was_skipped():
    from amad.report.summary import serving_table

    assert "Not measured: no interpreter with nvidia-pytriton" in serving_table(
        {"skipped": "no interpreter with nvidia-pytriton"}
    )
    row = {"throughput_rps": 858.9, "p50_ms": 17.9, "p90_ms": 25.0, "p99_ms": 30.3, "failed": 0, "requests": 4309}
    serving = {
        "models": ["amad_vqa"],
        "modes": {"dynamic_batching": {"16": row}, "no_batching": {"16": {**row, "p50_ms": None, "failed": 3}}},
        "settings": {"duration_s": 5.0, "timeout_s": 5.0},
    }
    table = serving_table(serving)
    assert "| dynamic batching | 16 | 858.9 | 17.90 | 25.00 | 30.30 | 0 / 4309 |" in table
    assert "| no batching | 16 | 858.9 | — |" in table and "3 / 4309" in table


def test_summary_marks_noisy_timings_and_a_negative_overhead_as_not_trustworthy(tmp_path):
    models = tmp_path / "models"
    model = VQAModel(tiny_model_config(heads=2), 3)
    for name in ("teacher", "s-amad"):
        save_model(models / name, TASK, model, {"answers": ["a", "b", "c"]}, model.preprocess)
    evals = {name: {"accuracy": 0.8, "params": 1e6, "gflops": 0.1} for name in ("teacher", "s-amad")}
    latency = {
        "settings": {"batch_sizes": [1], "max_spread": 1.5},
        "results": {
            "teacher": {"onnxruntime": {"1": {"p50_ms": 3.0, "spread": 1.1, "noisy": False}}},
            "s-amad": {"onnxruntime": {"1": {"p50_ms": 0.3, "spread": 29.0, "noisy": True}}},
        },
        "roofline": {
            "s-amad": {
                "gflops_per_sample": 0.1,
                "batch": 32,
                "achieved_gflops": 5,
                "of_peak": 0.1,
                "overhead_ms_b1": None,
            }
        },
    }
    text, _ = summary(evals, latency, tmp_path / "exported", models, "accuracy", {"model": None, "reason": "r"})
    assert "| 0.300 † | 10.00x † |" in text
    assert "**Not trustworthy (†):** 1 timings stayed noisy (p90 / p50 above 1.5)" in text
    assert "s-amad onnxruntime b1 (p90/p50 29.00)" in text
    assert "not measured (negative: noisy timings)" in text and "**Deployed:** nothing (r)" in text
