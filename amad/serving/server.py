"""Start a Triton server for an export folder and wait until it serves.

PyTriton's bundled ``tritonserver`` (the script :mod:`amad.serving.pytriton_server`, run by the
interpreter of the PyTriton venv: ``$AMAD_PYTRITON_PYTHON``, else ``.triton-venv`` in the current
folder, made by ``make triton-venv``) binds the folder's ONNX graphs, under the names the model
repository gives them. Nothing here needs a checkout: the script is found next to this file. It listens on the loopback
address unless a host is given, and stops on SIGTERM. (A native Triton serves
``exported/triton``, the model repository the export stage writes: ``tritonserver
--model-repository exported/triton``.)
"""

from __future__ import annotations

import json
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

from amad.contracts.task import get_task
from amad.errors import AmadError
from amad.export.onnx_runtime import read_metadata
from amad.serving.client import METADATA_MODEL
from amad.serving.names import triton_model_name
from amad.serving.sources import export_graph_names

LOOPBACK = "127.0.0.1"
SERVER_MODULE = "amad.serving.pytriton_server"  # run as a script by the PyTriton venv's interpreter:
SERVER_SCRIPT = Path(__file__).with_name("pytriton_server.py")  # that venv has no amad installed
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through an http_proxy


def _pytriton_candidate() -> tuple[Path, str]:
    """The interpreter to try and where that choice came from."""
    if "AMAD_PYTRITON_PYTHON" in os.environ:
        return Path(os.environ["AMAD_PYTRITON_PYTHON"]).absolute(), "$AMAD_PYTRITON_PYTHON"
    return Path(".triton-venv/bin/python").absolute(), "./.triton-venv of the working folder"


def pytriton_problem() -> str | None:
    """Why no PyTriton interpreter can be used (naming where it looked), or None when one can."""
    candidate, origin = _pytriton_candidate()
    if not candidate.exists():
        return f"no interpreter at {candidate} ({origin})"
    probe = subprocess.run([str(candidate), "-c", "import pytriton, onnxruntime"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no error output"])[-1]
        return f"{candidate} ({origin}) cannot import pytriton and onnxruntime: {last}"
    return None


def pytriton_python() -> Path | None:
    """An interpreter that imports PyTriton and ONNX Runtime ($AMAD_PYTRITON_PYTHON, else the
    working folder's .triton-venv), or None."""
    return None if pytriton_problem() is not None else _pytriton_candidate()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def served_graphs(export_dir: Path) -> dict[str, Path]:
    """The fp32 ONNX graphs of an export folder by their Triton model names; for a task with a
    ``serving_loop`` (captioning), the folder itself under one name (``amad_captioning_caption``):
    the server runs the loop over its graphs."""
    export_dir = Path(export_dir)
    files = {graph: export_dir / f"{graph}.onnx" for graph in export_graph_names(export_dir)}
    if not files or not all(path.is_file() for path in files.values()):
        raise AmadError(f"{export_dir}: no exported .onnx graphs (run the export stage: dvc repro export)")
    served = {}
    for graph, path in files.items():
        task = read_metadata(path).get("amad.task")
        if task is None:
            raise AmadError(f"{path}: not an amad export (no amad.task metadata)")
        if get_task(task, f"{path}: amad.task").serving_loop is not None:  # one model: the folder, its loop
            return {triton_model_name(task, get_task(task).served_graph): export_dir.resolve()}
        served[triton_model_name(task, graph)] = path.resolve()
    return served


def served_metadata(path: Path) -> dict[str, str]:
    """The ``amad.*`` metadata of what :func:`served_graphs` names: a graph file's, or a served export
    folder's first graph's."""
    path = Path(path)
    return read_metadata(path / f"{export_graph_names(path)[0]}.onnx" if path.is_dir() else path)


def serving_loop(path: Path) -> str | None:
    """``module:Class`` that serves an export folder as one model (None for a graph file)."""
    return get_task(served_metadata(path)["amad.task"]).serving_loop if Path(path).is_dir() else None


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


def server_command(
    graphs: dict[str, Path],
    ports: Ports,
    *,
    host: str = LOOPBACK,
    dynamic_batching: bool = True,
    max_batch: int = 32,
    beams: int | None = None,
) -> list[str]:
    """The command that serves ``graphs`` (Triton model name -> ONNX file, or export folder of a task
    with a serving loop) with PyTriton, from any folder (AmadError where no PyTriton interpreter
    exists); ``beams``: the loop's beam search (None: greedy)."""
    problem = pytriton_problem()
    if problem is not None:
        raise AmadError(
            f"no interpreter with nvidia-pytriton: {problem}; run `make triton-venv` in this folder (creates "
            ".triton-venv) or set AMAD_PYTRITON_PYTHON to one"
        )
    python = pytriton_python()
    command = [str(python), str(SERVER_SCRIPT), *(f"{name}={Path(path).resolve()}" for name, path in graphs.items())]
    loops = {name: serving_loop(path) for name, path in graphs.items()}
    for name, loop in loops.items():
        if loop is not None:
            command += ["--loop", f"{name}={loop}"]
    if beams is not None:
        if not any(loops.values()):
            raise AmadError("--beams: this export has no decode loop (only generative models search beams)")
        command += ["--generation", json.dumps({"beams": beams})]
    command += ["--host", host]
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
    export_dir: Path, *, dynamic_batching: bool = True, max_batch: int = 32
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A PyTriton server of ``export_dir``'s graphs on free loopback ports: yields (``host:port``, the
    process) once every graph is ready; SIGTERM at the end."""
    ports = Ports.free()
    graphs = served_graphs(export_dir)
    command = server_command(graphs, ports, dynamic_batching=dynamic_batching, max_batch=max_batch)
    with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        url = f"{LOOPBACK}:{ports.http}"
        try:
            wait_ready(url, [*graphs, METADATA_MODEL], process, output)
            yield url, process
        finally:
            stop(process)
