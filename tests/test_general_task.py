"""The task contract is general: a task written against the base classes alone (``reverse_task``: two
named outputs, a decode loop that calls its graph once per token, a dynamic sequence axis) goes
through prepare, teacher training, distillation with AMAD, evaluation, export with parity, the
benchmark and prediction, and learns."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import tiny_params_dict
from reverse_task import ReverseTask

from amad.bench.config import BenchmarkConfig
from amad.bench.latency import run_benchmark
from amad.config.params import parse_params
from amad.contracts.task import TASKS
from amad.export.onnx_runtime import OnnxModel
from amad.export.pipeline import export_model
from amad.models import load_model
from amad.models.evaluation import evaluate_model
from amad.training.distributed import Runtime
from amad.training.jobs import distill_student, train_teacher

CPU = Runtime(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture
def reverse_registered():
    TASKS.register("reverse")(ReverseTask)
    yield
    TASKS.unregister("reverse")


def reverse_params(tmp_path):
    raw = tiny_params_dict()
    raw["task"] = "reverse"
    raw["data"] = {"train": 768, "val": 64, "test": 128, "length": 6}
    raw["teacher"] = {"length": 6, "width": 32, "depth": 2, "heads": 4}
    raw["students"] = {"h2": {"length": 6, "width": 32, "depth": 1, "heads": 2}}
    raw["evaluate"] = {}
    optim = {**raw["train"], "epochs": 12, "batch_size": 32, "lr": 0.003}
    raw["train"], raw["distill"]["train"] = optim, {**optim, "epochs": 6}
    raw["distill"]["methods"] = ["amad"]
    raw["distill"]["init"]["strategy"] = "random"
    raw["distill"]["attention"]["modules"] = ["encoder_self", "decoder_self", "decoder_cross"]
    raw["export"].update(models=["teacher", "h2-amad"], int8="none", parity_samples=32)
    return parse_params(raw)


def test_a_task_written_against_the_contracts_alone_runs_the_pipeline_and_learns(reverse_registered, tmp_path):
    params = reverse_params(tmp_path)
    task = params.task_plugin()
    data = tmp_path / "prepared"
    task.prepare(params.data, params.seed, data)
    common = {"checkpoint_dir": tmp_path / "checkpoints", "log_dir": None, "log": lambda _: None}
    models = tmp_path / "models"
    train_teacher(params, data, models / "teacher", CPU, **common)
    result = distill_student(params, "h2", "amad", models / "teacher", data, models / "h2-amad", CPU, **common)
    assert result.final["train/attention"] > 0  # AMAD's term over all three groups, cross-attention included

    test_set = task.dataset(data, "test", None, {})
    most_common = Counter(test_set.sources.flatten().tolist()).most_common(1)[0][1] / test_set.sources.numel()
    scores = {}
    for name in ("teacher", "h2-amad"):
        loaded = load_model(models / name)
        assert loaded.preprocess == task.preprocess(params.teacher)
        scores[name] = evaluate_model(loaded.task, loaded.model, test_set)["token_accuracy"]
    assert scores["teacher"] > 0.6 > 2 * most_common, scores  # the constant predictor scores ~0.1
    assert scores["h2-amad"] > 2 * most_common, scores

    exported = tmp_path / "exported"
    for name in ("teacher", "h2-amad"):
        report = export_model(name, models / name, exported / name, data, params.export, log=lambda _: None)
        parity = report["parity"]
        assert set(parity["max_abs_diff_per_output"]) == {"model.logits", "model.memory"}
        assert parity["max_abs_diff"] <= params.export.parity_atol and parity["agreement"] == 1.0
        assert report["accuracy"]["onnx_fp32"] == pytest.approx(scores[name], abs=0.01)

    # prediction over the exported graph: the same decode loop, ONNX Runtime under it
    session = OnnxModel(exported / "teacher" / "model.onnx")
    assert session.output_names == ("logits", "memory")
    batch = torch.utils.data.default_collate([test_set[i] for i in range(8)])
    from_onnx = task.predictor({"model": session})(batch)["tokens"]
    teacher = load_model(models / "teacher")
    with torch.no_grad():
        from_torch = task.predictor(task.graphs(teacher.model))(batch)["tokens"]
    assert torch.equal(from_onnx, from_torch) and from_onnx.shape == (8, 6)

    config = BenchmarkConfig(
        batch_sizes=(1, 4),
        backends=("torch", "onnxruntime"),
        warmup=1,
        repeats=3,
        burst=1,
        threads=1,
        max_spread=1.5,
        retries=1,
    )
    latency = run_benchmark(["teacher", "h2-amad"], config, data_dir=data, models_dir=models, exported_dir=exported)
    for name in ("teacher", "h2-amad"):
        for backend in ("torch", "onnxruntime"):
            assert latency["results"][name][backend]["4"]["p50_ms"] > 0
