"""Start a Triton server for an export folder and wait until it serves.

PyTriton's bundled ``tritonserver`` (``deploy/pytriton_server.py``, run by the interpreter of the
PyTriton venv: ``$AMAD_PYTRITON_PYTHON`` or ``.triton-venv``, made by ``make triton-venv``) binds
the folder's ONNX graphs, under the names ``deploy.triton`` gives them. It listens on the loopback
address unless a host is given, and stops on SIGTERM. (A native Triton serves
``exported/triton``, the model repository the export stage writes: ``tritonserver
--model-repository exported/triton``.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from amad.errors import AmadError

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
SERVER_MODULE = "deploy.pytriton_server"  # run with the PyTriton venv's interpreter, in ROOT
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through an http_proxy


def pytriton_python() -> Path | None:
    """An interpreter that imports PyTriton and ONNX Runtime, or None."""
    candidate = Path(os.environ.get("AMAD_PYTRITON_PYTHON", ROOT / ".triton-venv" / "bin" / "python"))
    if not candidate.exists():
        return None
    probe = subprocess.run([str(candidate), "-c", "import pytriton, onnxruntime"], capture_output=True)
    return candidate if probe.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def export_graphs(export_dir: Path) -> list[Path]:
    """The fp32 ONNX graphs of an export folder (``model.onnx``; or ``image.onnx``, ``text.onnx``)."""
    graphs = sorted(p for p in Path(export_dir).glob("*.onnx") if p.name.count(".") == 1)
    if not graphs:
        raise AmadError(f"{export_dir}: no exported .onnx graph (run the export stage: dvc repro export)")
    return graphs


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


def server_command(
    graphs: list[Path], ports: Ports, *, host: str = LOOPBACK, dynamic_batching: bool = True, max_batch: int = 32
) -> list[str]:
    """The command that serves ``graphs`` (PyTriton; AmadError where no PyTriton interpreter exists);
    run it in :data:`ROOT`, where ``deploy`` and ``amad.serving.names`` are found."""
    python = pytriton_python()
    if python is None:
        raise AmadError(
            "no interpreter with nvidia-pytriton: run `make triton-venv` (creates .triton-venv) or set "
            "AMAD_PYTRITON_PYTHON"
        )
    graphs = [str(Path(graph).resolve()) for graph in graphs]  # the server runs in the source tree (ROOT)
    command = [str(python), "-m", SERVER_MODULE, *graphs, "--host", host]
    command += ["--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
    command += ["--max-batch", str(max_batch)]
    return command + ([] if dynamic_batching else ["--no-dynamic-batching"])


def wait_ready(url: str, models: list[str], process: subprocess.Popen, output: IO[str], timeout: float = 180) -> None:
    """Return once every one of ``models`` answers ready; AmadError (with the server's last output)
    if the process exits first or ``timeout`` passes."""
    deadline = time.time() + timeout
    for model in models:
        while True:
            try:
                with _DIRECT.open(f"http://{url}/v2/models/{model}/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    output.seek(0)
                    log = output.read()[-3000:]
                    raise AmadError(f"the server exited ({process.returncode}) before serving:\n{log}") from None
                if time.time() > deadline:
                    raise AmadError(f"the server did not serve '{model}' within {timeout:.0f} s") from None
                time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_server(
    export_dir: Path, models: list[str], *, dynamic_batching: bool = True, max_batch: int = 32
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A PyTriton server of ``export_dir``'s graphs on free loopback ports: yields (``host:port``, the
    process) once every one of ``models`` is ready; SIGTERM at the end."""
    ports = Ports.free()
    command = server_command(export_graphs(export_dir), ports, dynamic_batching=dynamic_batching, max_batch=max_batch)
    with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True)
        url = f"{LOOPBACK}:{ports.http}"
        try:
            wait_ready(url, models, process, output)
            yield url, process
        finally:
            stop(process)
