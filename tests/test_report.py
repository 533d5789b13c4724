"""The summary table's trade-off verdict."""

from helpers import TASK, tiny_model_config

from amad.models import save_model
from amad.report.summary import best_student, summary
from amad.tasks.vqa.model import VQAModel


def test_best_student_is_the_fastest_within_two_points_of_the_most_accurate():
    rows = [
        {"model": "teacher", "accuracy": 0.9, "latency_ms": 3.0},
        {"model": "a", "accuracy": 0.80, "latency_ms": 1.0},
        {"model": "b", "accuracy": 0.79, "latency_ms": 0.5},
        {"model": "c", "accuracy": 0.70, "latency_ms": 0.1},
        {"model": "d", "accuracy": 0.99, "latency_ms": None},  # not benchmarked
    ]
    assert best_student(rows)["model"] == "b"
    assert best_student(rows[:1]) is None


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
    text, rows = summary(evals, latency, exported, models, "accuracy")
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
