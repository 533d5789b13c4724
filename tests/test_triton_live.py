"""A real Triton server (started by PyTriton, in its own numpy<2 venv) answers through deploy/client.py.

Runs where an interpreter with ``nvidia-pytriton`` exists: ``$AMAD_PYTRITON_PYTHON`` or the repo's
``.triton-venv`` (``make triton-venv``); skipped elsewhere, with the reason.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import TASK, prepared_data, tiny_model_config, tiny_params

from amad.export.pipeline import export_model
from amad.models import save_model
from amad.tasks.vqa.model import VQAModel
from amad.tasks.vqa.predict import load_predictor, predict_question

ROOT = Path(__file__).resolve().parents[1]


def pytriton_python() -> Path | None:
    candidate = Path(os.environ.get("AMAD_PYTRITON_PYTHON", ROOT / ".triton-venv" / "bin" / "python"))
    if not candidate.exists():
        return None
    probe = subprocess.run([str(candidate), "-c", "import pytriton, onnxruntime"], capture_output=True)
    return candidate if probe.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
def test_pytriton_server_answers_like_the_local_model(tmp_path):
    python = pytriton_python()
    if python is None:
        pytest.skip("no interpreter with nvidia-pytriton (make triton-venv, or set AMAD_PYTRITON_PYTHON)")
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    from deploy.client import ask

    data = prepared_data(tmp_path / "data", train=16, val=16, test=8)
    answers = TASK.read_state(data)["answers"]
    torch.manual_seed(0)
    model = VQAModel(tiny_model_config(), len(answers))
    save_model(tmp_path / "model", TASK, model, {"answers": answers}, model.preprocess)
    export_model(
        "m",
        tmp_path / "model",
        tmp_path / "exported",
        data,
        replace(tiny_params().export, models=("teacher",), int8="none"),
        log=lambda _: None,
    )
    onnx_path = tmp_path / "exported" / "model.onnx"
    with serving(python, [onnx_path], "amad_vqa") as port:
        assert listening_addresses(port) == {"127.0.0.1"}, "loopback only unless --host says otherwise"
        image = next((data / "images").glob("test_*.png"))
        question = "what color is the circle?"
        remote = ask(f"127.0.0.1:{port}", "amad_vqa", image, question, top_k=3, metadata_onnx=onnx_path)
        local = predict_question(load_predictor(onnx_path), image, question, top_k=3)
        assert [a for a, _ in remote] == [a for a, _ in local]
        for (_, remote_p), (_, local_p) in zip(remote, local):
            assert remote_p == pytest.approx(local_p, abs=1e-5)


@pytest.mark.slow
def test_pytriton_server_embeds_like_the_exported_retrieval_encoders(tmp_path):
    python = pytriton_python()
    if python is None:
        pytest.skip("no interpreter with nvidia-pytriton (make triton-venv, or set AMAD_PYTRITON_PYTHON)")
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    from helpers import tiny_retrieval_params_dict

    from amad.export.onnx_model import OnnxModel
    from amad.params import parse_params
    from amad.tasks import get_task
    from deploy.client import embed

    task, params = get_task("retrieval"), parse_params(tiny_retrieval_params_dict())
    task.prepare(params.data, 0, tmp_path / "data", log=lambda _: None)
    torch.manual_seed(0)
    model = task.build_model(params.teacher, {})
    save_model(tmp_path / "model", task, model, {}, task.preprocess(params.teacher))
    export = replace(params.export, models=("teacher",), int8="none")
    export_model("m", tmp_path / "model", tmp_path / "exported", tmp_path / "data", export, log=lambda _: None)
    files = [tmp_path / "exported" / "image.onnx", tmp_path / "exported" / "text.onnx"]
    with serving(python, files, "amad_retrieval_text") as port:
        image = next((tmp_path / "data" / "images").glob("test_*.png"))
        caption = "two shapes: a red circle and a blue square"
        preprocess = task.preprocess(params.teacher)
        local_image = OnnxModel(files[0])(preprocess.load_image(image)[None])[0]
        local_text = OnnxModel(files[1])(preprocess.tokenize([caption]))[0]
        remote_image = embed(f"127.0.0.1:{port}", image=image, metadata_onnx=files[0])
        remote_text = embed(f"127.0.0.1:{port}", caption=caption, metadata_onnx=files[1])
        assert torch.allclose(torch.tensor(remote_image), local_image, atol=1e-5)
        assert torch.allclose(torch.tensor(remote_text), local_text, atol=1e-5)


@contextlib.contextmanager
def serving(python: Path, files: list[Path], ready_model: str):
    """A PyTriton server of ``files`` on free loopback ports (yields the HTTP port); SIGTERM at the end."""
    ports = [free_port() for _ in range(3)]
    command = [str(python), "-m", "deploy.pytriton_server", *map(str, files), "--http-port", str(ports[0])]
    command += ["--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/models/{ready_model}/ready", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"Triton did not come up:\n{server.stdout.read()[-3000:]}")
                time.sleep(1)
        yield ports[0]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
