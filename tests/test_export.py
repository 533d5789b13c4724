"""Export (ONNX parity, int8, fp16, TensorRT guard), benchmark schema, predict CLI and Triton repository."""

import functools
import json
import re
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from helpers import TASK, prepared_data, tiny_model_config, tiny_params

from amad.bench.config import BACKENDS
from amad.cli import main as amad_main
from amad.errors import AmadError
from amad.export import tensorrt
from amad.export.onnx_runtime import OnnxModel, read_metadata
from amad.export.pipeline import export_model
from amad.models import save_model
from amad.models.evaluation import model_cost
from amad.serving.repository import write_model_repository
from amad.serving.sources import load_source
from amad.tasks.vqa.model import VQAModel

PARAMS = tiny_params()


def read_answers(data):
    return TASK.read_state(data)["answers"]


def export_config(**changes):
    return replace(PARAMS.export, **changes)


def benchmark_config(**changes):
    return replace(PARAMS.benchmark, **changes)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = prepared_data(root / "data", train=32, val=24, test=24)
    answers = read_answers(data)
    state = TASK.read_state(data)  # the answers and the training questions' words
    for name, heads in (("teacher", 4), ("student", 2)):
        torch.manual_seed(0)
        model = VQAModel(tiny_model_config(heads=heads), len(answers))
        save_model(root / "models" / name, TASK, model, state, model.preprocess)
    reports = {
        name: export_model(
            name,
            root / "models" / name,
            root / "exported" / name,
            data,
            export_config(models=("teacher", "student"), parity_samples=24, int8="auto", int8_max_drop=1.0),
            log=lambda _: None,
        )
        for name in ("teacher", "student")
    }
    return root, data, reports


def test_export_writes_a_self_describing_onnx_with_parity_and_int8_accuracy(workspace):
    root, _, reports = workspace
    folder = root / "exported" / "teacher"
    assert {"model.onnx", "model.int8.onnx", "model.fp16.onnx", "export.json"} <= {p.name for p in folder.iterdir()}
    report = json.loads((folder / "export.json").read_text())
    assert report == json.loads(json.dumps(reports["teacher"]))
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["agreement"] >= 0.995
    assert 0 <= report["accuracy"]["onnx_fp32"] <= 1 and 0 <= report["accuracy"]["onnx_int8"] <= 1
    assert abs(report["accuracy"]["torch_fp32"] - report["accuracy"]["onnx_fp32"]) <= 0.01, "same protocol, beside"
    # the fp16 graphs run on ONNX Runtime's CPU provider here: their metric is recorded, near fp32's
    assert report["fp16"] == {"measured_on": "onnxruntime CPUExecutionProvider"}
    assert abs(report["accuracy"]["onnx_fp16"] - report["accuracy"]["onnx_fp32"]) <= 0.05
    assert report["tensorrt"] == {"skipped": tensorrt.unavailable_reason()}
    graph = onnx.load(str(folder / "model.onnx"))
    assert graph.opset_import[0].version >= 18
    assert [i.name for i in graph.graph.input] == ["pixels", "tokens"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    source = load_source(folder / "model.int8.onnx")  # the file alone says how to use it
    assert source.task_name == "vqa" and list(source.graphs) == ["model"]
    assert source.state["answers"] == read_answers(root / "data") and source.preprocess.image_size == 24


def test_auto_int8_keeps_the_faster_candidate_within_budget_and_records_both(workspace):
    root, _, reports = workspace
    record = reports["student"]["int8"]
    assert record["mode"] == "auto" and record["chosen"] in ("dynamic", "static")
    candidates = record["candidates"]
    assert set(candidates) == {"dynamic", "static"}
    faster = min(candidates, key=lambda kind: candidates[kind]["b1_ms"])
    assert record["chosen"] == faster  # a budget of 1.0 admits both
    assert candidates[faster]["val_drop"] == pytest.approx(
        record["fp32"]["val_metric"] - candidates[faster]["val_metric"]
    )
    names = {p.name for p in (root / "exported" / "student").iterdir()}
    assert "model.int8.onnx" in names and not [n for n in names if "int8-" in n]


def test_static_int8_quantises_only_the_linear_layers(workspace, tmp_path):
    from amad.export.quantize import quantize_static_int8

    root, _, _ = workspace
    source = root / "exported" / "student" / "model.onnx"
    session = OnnxModel(source)
    feed = {name: np.zeros([2, *shape], dtype) for name, shape, dtype in _inputs(session)}
    quantize_static_int8(source, tmp_path / "static.onnx", [feed])
    graph = onnx.load(str(tmp_path / "static.onnx")).graph
    weights = {i.name for i in graph.initializer}
    produced_by = {out: node for node in graph.node for out in node.output}
    quantised, activation_products = 0, 0
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        inputs = [produced_by.get(name) for name in node.input[:2]]
        if all(i is not None and i.op_type == "DequantizeLinear" for i in inputs):
            quantised += 1
            assert inputs[1].input[0] in weights, f"{node.name}: an activation B was quantised"
        elif not any(name in weights for name in node.input[:2]):
            activation_products += 1  # attention's products stay fp32
    assert quantised > 0 and activation_products > 0
    assert read_metadata(tmp_path / "static.onnx") == read_metadata(source)


def test_sessions_that_take_turns_stop_spinning_when_a_call_returns(workspace):
    root, _, _ = workspace
    source = root / "exported" / "student" / "model.onnx"
    served, taking_turns = OnnxModel(source), OnnxModel(source, idle_spinning=False)

    def entry(model: OnnxModel, key: str) -> str | None:
        try:
            return model.session.get_session_options().get_session_config_entry(key)
        except RuntimeError:  # "does not have configuration with key": ONNX Runtime's default
            return None

    assert [entry(m, "session.force_spinning_stop") for m in (served, taking_turns)] == [None, "1"]
    assert [entry(m, "session.intra_op.allow_spinning") for m in (served, taking_turns)] == [None, None]
    feed = [np.zeros([1, *shape], dtype) for _, shape, dtype in _inputs(served)]
    np.testing.assert_array_equal(served.run(*feed), taking_turns.run(*feed))


def test_auto_int8_keeps_nothing_when_every_candidate_misses_the_budget(workspace, tmp_path):
    import shutil

    from amad.export.int8 import build_int8

    root, _, _ = workspace
    shutil.copy(root / "exported" / "student" / "model.onnx", tmp_path / "model.onnx")
    session = OnnxModel(tmp_path / "model.onnx")
    one = tuple(torch.from_numpy(np.zeros([1, *shape], dtype)) for _, shape, dtype in _inputs(session))
    feed = {name: x.numpy() for (name, _, _), x in zip(_inputs(session), one)}
    scores = iter([0.9, 0.5, 0.6])  # fp32, dynamic, static
    record = build_int8(
        tmp_path,
        ["model"],
        "auto",
        calibration=lambda: {"model": [feed]},
        score=lambda _models: next(scores),
        inputs={"model": one},
        max_drop=0.1,
    )
    assert record["chosen"] is None and "exceed export.int8_max_drop 0.1" in record["reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _inputs(session):
    """``(name, shape without batch, numpy dtype)`` of a session's inputs."""
    kinds = {"tensor(float)": np.float32, "tensor(int64)": np.int64}
    return [(i.name, i.shape[1:], kinds[i.type]) for i in session.session.get_inputs()]


def test_failed_parity_stops_and_writes_nothing(workspace):
    root, data, _ = workspace
    with pytest.raises(AmadError, match="ONNX parity failed"):
        export_model(
            "teacher",
            root / "models" / "teacher",
            root / "strict",
            data,
            export_config(parity_samples=8, parity_atol=1e-30),
            log=lambda _: None,
        )
    assert not (root / "strict").exists()


def test_tensorrt_is_skipped_cleanly_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert tensorrt.unavailable_reason() == "no CUDA device"
    with pytest.raises(RuntimeError, match="TensorRT unavailable: no CUDA device"):
        tensorrt.build_engine(
            tmp_path / "a.onnx",
            tmp_path / "b.onnx",
            tmp_path / "c.plan",
            input_shapes={"pixels": ((1, 3, 8, 8), (8, 3, 8, 8), (32, 3, 8, 8))},
            profile=PARAMS.export.tensorrt,
        )


def test_tensorrt_profiles_put_the_batch_where_each_input_has_it_and_bound_sequence_axes():
    from amad.contracts.graph import GraphSpec
    from amad.export.config import TensorRTConfig

    profile = TensorRTConfig(enabled=True, min_batch=1, opt_batch=8, max_batch=32, workspace_mib=64)
    spec = GraphSpec(
        ("tokens", "keys", "mask"),
        ("logits",),
        (torch.zeros(2, 2), torch.zeros(3, 2, 4, 5, 8), torch.zeros(2, 6)),
        {},
        lambda batch: (),
        {"tokens": {0: "batch", 1: "step"}, "keys": {1: "batch", 3: "past"}},
        {"step": 35, "past": 35},
    )
    shapes = tensorrt.optimisation_shapes(spec, profile)
    assert shapes["tokens"] == ((1, 1), (8, 2), (32, 35))
    assert shapes["keys"] == ((3, 1, 4, 1, 8), (3, 8, 4, 5, 8), (3, 32, 4, 35, 8)), "batch on axis 1, past bounded"
    assert shapes["mask"] == ((1, 6), (8, 6), (32, 6)), "no axes named: the batch on axis 0 alone"
    unbounded = replace(spec, axis_limits={"step": 35})
    with pytest.raises(ValueError, match=r"keys: dynamic axis 3 \(past\) has no axis limit"):
        tensorrt.optimisation_shapes(unbounded, profile)


def test_benchmark_schema(workspace, monkeypatch):
    from amad.bench.cuda import CUDA_BACKENDS
    from amad.bench.latency import run_benchmark, speedups

    root, data, _ = workspace
    config = benchmark_config(batch_sizes=(1, 2), warmup=1, repeats=3, threads=1)
    config = replace(config, backends=BACKENDS)
    report = run_benchmark(
        ["teacher", "student"],
        config,
        data_dir=data,
        models_dir=root / "models",
        exported_dir=root / "exported",
        log=lambda _: None,
    )
    assert report["machine"]["threads"] == 1
    for model in ("teacher", "student"):
        for backend in ("torch", "onnxruntime", "onnxruntime_int8"):
            for batch in ("1", "2"):
                stats = report["results"][model][backend][batch]
                assert stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
                assert stats["throughput"] > 0
        if not torch.cuda.is_available():
            assert report["results"][model]["tensorrt"] == {"skipped": "no CUDA device"}
            for backend in CUDA_BACKENDS:
                assert report["results"][model][backend] == {"skipped": "no CUDA device"}
    ratios = speedups(report)
    assert {"student_vs_teacher_onnxruntime_b1", "teacher_onnxruntime_vs_torch_b1", "student_int8_vs_fp32_b1"} <= set(
        ratios
    )
    assert report["machine"]["matmul_peak_gflops"] > 0
    use = report["roofline"]["teacher"]
    teacher = VQAModel(tiny_model_config(heads=4), len(read_answers(data)))
    cost = model_cost(teacher, TASK.example_inputs(teacher.preprocess, 1))
    assert use["gflops_per_sample"] == pytest.approx(cost["gflops"], rel=1e-3) and use["batch"] == 2
    fp32 = report["results"]["teacher"]["onnxruntime"]
    assert use["achieved_gflops"] == pytest.approx(use["gflops_per_sample"] * 2 / (fp32["2"]["p50_ms"] / 1e3), rel=1e-3)
    overhead = fp32["1"]["p50_ms"] - fp32["2"]["p50_ms"] / 2
    assert use["overhead_ms_b1"] == (pytest.approx(overhead, abs=1e-3) if overhead >= 0 else None)


def test_a_gpu_backend_that_fails_at_a_batch_size_is_reported_there_and_the_others_are_timed(workspace, monkeypatch):
    from amad.bench import latency

    root, data, _ = workspace
    real = latency.make_runner

    def make_runner(backend, model_dir, export_dir, graph, threads):
        runner = real("torch", model_dir, export_dir, graph, threads)
        if backend == "torch":
            return runner

        def fails_from_batch_two(*inputs):
            if inputs[0].shape[0] > 1:
                raise RuntimeError("CUDA graph capture failed: operation not permitted when stream is capturing")
            return runner(*inputs)

        return fails_from_batch_two

    monkeypatch.setattr(latency, "make_runner", make_runner)
    config = benchmark_config(batch_sizes=(1, 2), warmup=1, repeats=3, threads=1)
    run = functools.partial(
        latency.run_benchmark,
        ["student"],
        data_dir=data,
        models_dir=root / "models",
        exported_dir=root / "exported",
        log=lambda _: None,
    )
    report = run(replace(config, backends=("torch", "torch_cuda_fp16_graph")))
    failed = report["results"]["student"]["torch_cuda_fp16_graph"]
    assert "p50_ms" in failed["1"], "the batch size timed before the failure stays"
    reason = (
        "failed at batch 2: RuntimeError: CUDA graph capture failed: operation not permitted when stream is capturing"
    )
    assert failed["2"] == {"skipped": reason}
    assert set(report["results"]["student"]["torch"]) == {"1", "2"}
    with pytest.raises(RuntimeError, match="operation not permitted"):  # a CPU backend's failure is a bug
        run(replace(config, backends=("torch", "onnxruntime")))


def test_roofline_needs_batch_one_and_a_larger_batch():
    from amad.bench.roofline import roofline

    stats = {"1": {"p50_ms": 2.0}, "32": {"p50_ms": 16.0}}
    use = roofline(stats, gflops=0.5, peak=100.0)
    assert use == {
        "gflops_per_sample": 0.5,
        "batch": 32,
        "achieved_gflops": 1000.0,
        "of_peak": 10.0,
        "overhead_ms_b1": 1.5,
    }
    assert roofline({"1": {"p50_ms": 2.0}}, gflops=0.5, peak=100.0) is None
    contradictory = {"1": {"p50_ms": 0.2}, "32": {"p50_ms": 16.0}}  # batch 1 faster than a sample's share
    assert roofline(contradictory, gflops=0.5, peak=100.0)["overhead_ms_b1"] is None, "not measured, never clamped"
    assert roofline({"1": {"p50_ms": 2.0}, "32": {"skipped": "failed at batch 32"}}, gflops=0.5, peak=100.0) is None


@pytest.mark.parametrize("burst, order", [(1, "ab" * 4), (3, "aaabbb" * 2)])
def test_benchmark_interleaves_bursts_and_skips_the_first_call_of_each(burst, order):
    from amad.bench.latency import time_interleaved

    calls = []
    runners = {(name, "fake"): functools.partial(lambda name, *_: calls.append(name), name) for name in "ab"}
    config = benchmark_config(warmup=1, repeats=4, burst=burst)
    timings = time_interleaved(runners, dict.fromkeys(runners, (torch.zeros(1), torch.zeros(1))), config)
    assert "".join(calls) == "ab" + order  # warm-up round, then the timed rounds
    assert {key: len(times) for key, times in timings.items()} == {("a", "fake"): 4, ("b", "fake"): 4}


def test_benchmark_times_one_runtime_after_another():
    from amad.bench.latency import time_interleaved

    calls = []
    backends = ("torch", "onnxruntime", "onnxruntime_int8", "torch_cuda_fp16")
    runners = {
        (model, backend): functools.partial(lambda key, *_: calls.append(key), (model, backend))
        for model in ("teacher", "student")
        for backend in backends
    }
    timings = time_interleaved(runners, dict.fromkeys(runners, ()), benchmark_config(warmup=1, repeats=2, burst=2))
    runtimes = {"torch": "T", "onnxruntime": "O", "onnxruntime_int8": "O", "torch_cuda_fp16": "C"}
    assert "".join(runtimes[b] for _, b in calls) == "TT" + "TTTT" * 2 + "OOOO" + "OOOOOOOO" * 2 + "CC" + "CCCC" * 2
    onnx_round = [key for key in calls if key[1].startswith("onnx")][4:12]
    assert onnx_round == [key for key in runners for _ in range(2) if key[1].startswith("onnx")]  # pairs interleaved
    assert all(len(times) == 2 for times in timings.values())


def test_benchmark_burst_must_be_positive():
    with pytest.raises(AmadError, match=r"benchmark\.burst"):
        benchmark_config(burst=0).validate("benchmark")


@pytest.mark.parametrize(
    "source", ["models/teacher", "exported/teacher/model.onnx", "exported/teacher/model.int8.onnx"]
)
def test_predict_single_and_manifest(workspace, source, capsys, tmp_path):
    root, data, _ = workspace
    image = next((data / "images").glob("test_*.png"))
    amad_main(
        [
            "predict",
            "--model",
            str(root / source),
            "--image",
            str(image),
            "--question",
            "is there a red circle?",
            "--top-k",
            "2",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"\S+( \S+)*\t[01]\.\d{4}", line) for line in lines)
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    manifest = data / f"asked-{tmp_path.name}.jsonl"  # the test images, each with a question the tiny context holds
    manifest.write_text("".join(json.dumps({**r, "question": "is there a circle?"}) + "\n" for r in rows))
    amad_main(
        [
            "predict",
            "--model",
            str(root / source),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "preds.jsonl"),
        ]
    )
    predictions = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(predictions) == 24 and set(predictions[0]) == {"id", "answer", "score"}


@pytest.mark.parametrize("source", ["models/teacher", "exported/teacher", "exported/teacher/model.onnx"])
def test_predict_warns_about_unknown_words_and_refuses_a_long_manifest_question(workspace, source, capsys, tmp_path):
    root, data, _ = workspace
    image = next((data / "images").glob("test_*.png"))
    model = str(root / source)
    amad_main(["predict", "--model", model, "--image", str(image), "--question", "is there a red circle?"])
    assert "warning" not in capsys.readouterr().err
    amad_main(["predict", "--model", model, "--image", str(image), "--question", "which breed is the dog?"])
    err = capsys.readouterr().err
    assert "warning: --question: 3 of 5 words never appear in the questions this model was trained on" in err
    assert "(which, breed, dog" in err
    rows = [{"id": "ok", "image": image.name, "question": "is there a circle?"}]
    rows.append({"id": "long", "image": image.name, "question": " ".join(["circle"] * 40)})
    manifest = data / "images" / "asked.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(SystemExit):
        amad_main(["predict", "--model", model, "--manifest", str(manifest), "--out", str(tmp_path / "p.jsonl")])
    assert f"{manifest}: id 'long'" in capsys.readouterr().err and not (tmp_path / "p.jsonl").exists()
    manifest.unlink()


@pytest.mark.parametrize("source", ["exported/teacher", "exported/teacher/model.onnx"])
def test_predict_from_an_export_loads_neither_torch_nor_a_training_tokenizer(workspace, source):
    import subprocess
    import sys

    root, data, _ = workspace
    image = next((data / "images").glob("test_*.png"))
    code = (
        "import sys\n"
        "from amad.cli import main\n"
        f"main(['predict', '--model', {str(root / source)!r}, '--image', {str(image)!r}, '--question', 'is there a circle?'])\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers', 'timm') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    answer, loaded = done.stdout.strip().splitlines()
    assert loaded == "[]" and re.fullmatch(r"\S+( \S+)*\t[01]\.\d{4}", answer)


def test_predict_errors(workspace, capsys):
    root, _, _ = workspace
    with pytest.raises(SystemExit) as exit_info:
        amad_main(["predict", "--model", str(root / "nowhere"), "--image", "x.png", "--question", "q"])
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err
    broken = root / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(SystemExit):
        amad_main(["predict", "--model", str(root / "models" / "teacher"), "--image", str(broken), "--question", "q"])
    assert "cannot read image" in capsys.readouterr().err


def test_triton_repository_matches_the_onnx_model(workspace, tmp_path):
    root, _, _ = workspace
    names = write_model_repository(root / "exported" / "student", tmp_path / "triton", max_batch=16)
    assert names == ["amad_vqa"]  # no engine without TensorRT
    model_dir = tmp_path / "triton" / "amad_vqa"
    config = (model_dir / "config.pbtxt").read_text()
    graph = onnx.load(str(model_dir / "1" / "model.onnx"))
    source = load_source(model_dir / "1" / "model.onnx")
    answers, preprocess = source.state["answers"], source.preprocess
    assert 'backend: "onnxruntime"' in config and "max_batch_size: 16" in config
    assert f"dims: [ 3, {preprocess.image_size}, {preprocess.image_size} ]" in config
    assert f"dims: [ {preprocess.context_length} ]" in config
    assert f"dims: [ {len(answers)} ]" in config
    tensors = re.findall(r'name: "(\w+)" data_type', config)
    assert tensors == [i.name for i in graph.graph.input] + [o.name for o in graph.graph.output]
    assert "dynamic_batching" in config and "kind: KIND_CPU" in config
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")
    assert (model_dir / "answers.txt").read_text().splitlines() == answers
    parameters = dict(re.findall(r'key: "([\w.]+)" value: \{ string_value: "(.*)" \}', config))
    assert json.loads(parameters["amad.data.preprocess"].replace('\\"', '"'))["image_size"] == preprocess.image_size
    assert json.loads(parameters["amad.answers"].replace('\\"', '"')) == answers
    assert parameters["amad.task"] == "vqa" and parameters["amad.graph"] == "model"  # what a client needs


def test_model_cost_counts_parameters(workspace):
    model = VQAModel(tiny_model_config(), 5)
    cost = model_cost(model, TASK.example_inputs(model.preprocess, 1))
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    assert cost["gflops"] > 0


def test_noisy_pairs_are_re_timed_and_flagged_when_they_stay_noisy(monkeypatch):
    from amad.bench import latency

    steady, noisy = [0.001] * 9 + [0.0011], [0.001] * 8 + [0.004, 0.004]  # p90/p50 1.1 and 4.0
    rounds = iter(
        [
            {("a", "x"): steady, ("b", "x"): noisy, ("c", "x"): noisy},
            {("b", "x"): steady, ("c", "x"): noisy},  # only the noisy pairs are re-timed
            {("c", "x"): noisy},
        ]
    )
    asked = []

    def fake(runners, inputs, config):
        asked.append(sorted(runners))
        return next(rounds)

    monkeypatch.setattr(latency, "time_interleaved", fake)
    config = benchmark_config(max_spread=1.5, retries=2)
    runners = dict.fromkeys([("a", "x"), ("b", "x"), ("c", "x")])
    timings, retimed = latency._steady_timings(runners, {}, config, lambda _: None, 1)
    assert asked == [[("a", "x"), ("b", "x"), ("c", "x")], [("b", "x"), ("c", "x")], [("c", "x")]]
    assert retimed == {("a", "x"): 0, ("b", "x"): 1, ("c", "x"): 2} and timings["b", "x"] == steady
    stats = latency._statistics(timings["c", "x"], 1, None, config.max_spread)
    assert stats["noisy"] and stats["spread"] == pytest.approx(4.0, rel=0.01)
    assert not latency._statistics(steady, 1, None, config.max_spread)["noisy"]
