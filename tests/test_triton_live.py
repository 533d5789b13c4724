"""A real Triton server (started by PyTriton, in its own numpy<2 venv) answers through the task's
predictor over served graphs (amad/serving/client.py), as the local export does.

Runs where an interpreter with ``nvidia-pytriton`` exists: ``$AMAD_PYTRITON_PYTHON`` or the repo's
``.triton-venv`` (``make triton-venv``, which ``.ci/run`` runs); skipped elsewhere, with the reason.
Also: the load test in both batching modes, bad requests among good ones, a server killed under load.
"""

import json
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TASK, prepared_data, tiny_model_config, tiny_params

from amad.errors import AmadError
from amad.export.pipeline import export_model
from amad.models import save_model
from amad.serving.client import server_source
from amad.serving.server import pytriton_python, running_server
from amad.serving.sources import load_source
from amad.tasks.vqa.model import VQAModel
from amad.tasks.vqa.predict import answerer, predict_question

ROOT = Path(__file__).resolve().parents[1]


def require_pytriton() -> None:
    if pytriton_python() is None:
        pytest.skip("no interpreter with nvidia-pytriton (make triton-venv, or set AMAD_PYTRITON_PYTHON)")
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")


@pytest.fixture(autouse=True)
def pytriton_home(monkeypatch) -> Iterator[Path]:
    """Where this test's servers make their PyTriton workspace (not ~/.cache/pytriton), removed after;
    short, as the sockets in it must be (108 bytes at most)."""
    home = Path(tempfile.mkdtemp(prefix="pyt"))
    monkeypatch.setenv("PYTRITON_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def tiny_vqa_export(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny random VQA model's export folder (fp32 only) and its prepared data."""
    data = prepared_data(tmp_path / "data", train=16, val=16, test=8)
    answers = TASK.read_state(data)["answers"]
    torch.manual_seed(0)
    model = VQAModel(tiny_model_config(), len(answers))
    save_model(tmp_path / "model", TASK, model, {"answers": answers}, model.preprocess)
    export = replace(tiny_params().export, models=("teacher",), int8="none")
    export_model("m", tmp_path / "model", tmp_path / "exported", data, export, log=lambda _: None)
    return tmp_path / "exported", data


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


@pytest.mark.slow
def test_pytriton_server_answers_like_the_local_model(tmp_path, pytriton_home):
    require_pytriton()
    export, data = tiny_vqa_export(tmp_path)
    onnx_path = export / "model.onnx"
    with running_server(export) as (url, _):
        assert list(pytriton_home.glob("workspace_*")), "the server's workspace is where we look"
        port = int(url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"127.0.0.1"}, "loopback only unless --host says otherwise"
        image = next((data / "images").glob("test_*.png"))
        question = "what color is the circle?"
        served = server_source(f"127.0.0.1:{port}")  # the address alone: the amad_metadata model says the rest
        assert list(served.graphs) == ["model"] and served.task_name == "vqa"
        assert served.state["answers"] == load_source(onnx_path).state["answers"]
        remote = predict_question(answerer(served), image, question, top_k=3)
        local = predict_question(answerer(load_source(onnx_path)), image, question, top_k=3)
        assert [a for a, _ in remote] == [a for a, _ in local]
        for (_, remote_p), (_, local_p) in zip(remote, local):
            assert remote_p == pytest.approx(local_p, abs=1e-5)
    assert not list(pytriton_home.glob("workspace_*")), "SIGTERM left PyTriton's workspace behind"


@pytest.mark.slow
def test_pytriton_server_embeds_like_the_exported_retrieval_encoders(tmp_path):
    require_pytriton()
    from helpers import tiny_retrieval_params_dict

    from amad.config.params import parse_params
    from amad.contracts.task import get_task
    from amad.tasks.retrieval.predict import encoders, rank

    task, params = get_task("retrieval"), parse_params(tiny_retrieval_params_dict())
    task.prepare(params.data, 0, tmp_path / "data", log=lambda _: None)
    torch.manual_seed(0)
    model = task.build_model(params.teacher, {})
    save_model(tmp_path / "model", task, model, {}, task.preprocess(params.teacher))
    export = replace(params.export, models=("teacher",), int8="none")
    export_model("m", tmp_path / "model", tmp_path / "exported", tmp_path / "data", export, log=lambda _: None)
    with running_server(tmp_path / "exported") as (url, _):
        images = sorted((tmp_path / "data" / "images").glob("test_*.png"))[:2]
        captions = ["two shapes: a red circle and a blue square", "a green triangle"]
        served = server_source(url)
        assert sorted(served.graphs) == ["image", "text"] and served.task_name == "retrieval"
        remote = rank(encoders(served), images, captions)
        local = rank(encoders(load_source(tmp_path / "exported")), images, captions)
        for remote_entry, local_entry in zip(remote["images"], local["images"]):
            for r, loc in zip(remote_entry["captions"], local_entry["captions"]):
                assert r["caption"] == loc["caption"] and r["score"] == pytest.approx(loc["score"], abs=1e-5)


@pytest.mark.slow
def test_load_test_in_both_batching_modes_answers_every_request(tmp_path):
    require_pytriton()
    from amad.serving.report import run_load_test

    export, data = tiny_vqa_export(tmp_path)
    report = run_load_test(export, data, [1, 4], 1.5, 5.0, 10_000, None, tmp_path / "serving.json", log=lambda _: None)
    assert set(report["modes"]) == {"dynamic_batching", "no_batching"}
    for mode, levels in report["modes"].items():
        for level, row in levels.items():
            assert row["failed"] == 0 and row["requests"] > 0 and row["throughput_rps"] > 0, (mode, level, row)
            assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert json.loads((tmp_path / "serving.json").read_text()) == json.loads(json.dumps(report))


def load_in_background(url, export, requests, **limits):
    """A two-client load test on its own thread: ``(thread, results)``, results filled when it ends."""
    from amad.serving.loadtest import load_test

    results = {}
    thread = threading.Thread(
        target=lambda: results.update(load_test(url, export, requests, [2], log=lambda _: None, **limits))
    )
    thread.start()
    return thread, results


@pytest.mark.slow
def test_bad_requests_get_errors_while_good_ones_around_them_are_served(tmp_path):
    require_pytriton()
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    from amad.serving.loadtest import validation_requests

    export, data = tiny_vqa_export(tmp_path)
    good = validation_requests(export, data)
    with running_server(export) as (url, server):
        background, results = load_in_background(url, export, good, duration=3.0, timeout=5.0, max_requests=10_000)
        client = http.InferenceServerClient(url=url, network_timeout=5.0)  # its connection stays open
        pixels = good[0]["pixels"].numpy()
        tokens = good[0]["tokens"].numpy()

        def infer(*tensors):
            inputs = []
            for name, array, dtype in tensors:
                tensor = http.InferInput(name, list(array.shape), dtype)
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            return client.infer("amad_vqa", inputs)

        bad = {
            "wrong dtype": [("pixels", pixels, "FP32"), ("tokens", tokens.astype(np.int32), "INT32")],
            "wrong shape": [("pixels", pixels[:, :, :10, :10].copy(), "FP32"), ("tokens", tokens, "INT64")],
            "missing input": [("pixels", pixels, "FP32")],
        }
        for case, tensors in bad.items():
            with pytest.raises(InferenceServerException) as error:
                infer(*tensors)
            assert str(error.value), case
        assert infer(("pixels", pixels, "FP32"), ("tokens", tokens, "INT64")).as_numpy("logits").shape[0] == 1
        background.join()
        assert results["2"]["failed"] == 0 and results["2"]["requests"] > 0
        # the client refuses what the server must never see
        (tmp_path / "not-an-image.png").write_text("text")
        served = answerer(server_source(url, export_dir=export))
        for image, question, message in (
            (tmp_path / "not-an-image.png", "what color?", "cannot read image"),
            (next((data / "images").glob("*.png")), "  ", "question is empty"),
            (next((data / "images").glob("*.png")), "word " * 40, "tokens long"),
        ):
            with pytest.raises(AmadError, match=message):
                predict_question(served, image, question)
    # the open connection held Triton for its exit timeout (was 30 s: stop() killed it, its workspace left behind)
    assert server.returncode == 0, "SIGTERM did not stop the server within stop()'s 30 s"


@pytest.mark.slow
def test_a_server_killed_under_load_makes_the_load_test_report_errors_and_end(tmp_path):
    require_pytriton()
    from amad.serving.loadtest import validation_requests

    export, data = tiny_vqa_export(tmp_path)
    requests = validation_requests(export, data)
    with running_server(export) as (url, process):
        start = time.perf_counter()
        runner, results = load_in_background(url, export, requests, duration=4.0, timeout=2.0, max_requests=100_000)
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        runner.join(timeout=30)
        assert not runner.is_alive(), "the load test hung on a dead server"
        assert time.perf_counter() - start < 4.0 + 2.0 + 5.0
    row = results["2"]
    assert row["failed"] > 0 and row["requests"] > row["failed"], row  # served, then errors once it died


@pytest.mark.slow
def test_the_readme_serve_and_server_predict_commands_as_written(tmp_path):
    """README: `amad serve deployed/model`, then `amad predict --server localhost:8000 ...`, verbatim."""
    import os
    import shlex
    import subprocess
    import sys

    from helpers import readme_commands, readme_inputs

    from amad.serving.server import stop, wait_ready

    require_pytriton()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("port 8000 (the README's) is in use here")
    export, _ = tiny_vqa_export(tmp_path / "work")
    (tmp_path / "deployed").mkdir()
    shutil.copytree(export, tmp_path / "deployed" / "model")
    readme_inputs(tmp_path)
    serve = readme_commands("amad serve deployed/model")
    asks = [line for line in readme_commands("amad predict --server") if "--question" in line]
    assert serve and asks
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env["AMAD_PYTRITON_PYTHON"] = str(pytriton_python())
    with tempfile.TemporaryFile("w+") as output:
        server = subprocess.Popen(
            shlex.split(serve[0]), cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_ready("127.0.0.1:8000", ["amad_vqa", "amad_metadata"], server, output)
            for line in asks:
                result = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True, text=True)
                assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
                answer, probability = result.stdout.strip().splitlines()[0].rsplit("\t", 1)
                assert answer and 0 <= float(probability) <= 1
        finally:
            stop(server)
