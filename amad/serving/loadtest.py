"""Drive a Triton server with concurrent requests and measure it.

For each concurrency level, that many threads (one ``tritonclient`` each: clients are not
thread-safe) send valid requests back to back for ``duration`` seconds (and at most
``max_requests`` in all), each request to one of the export's graphs in turn. A request that
fails (error response, refused connection, timeout) is counted, not retried; every call has a
``timeout``, so a server that dies mid-load makes the test report errors and end, never hang.
Requests go only to the loopback address.

Result per level: requests, failed, throughput (successful requests per second), p50 / p90 / p99
latency of the successful ones (ms).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from amad.errors import AmadError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TRITON_DTYPES = {"tensor(float)": ("FP32", np.float32), "tensor(int64)": ("INT64", np.int64)}
TRITON_NAMES = {numpy_type: name for name, numpy_type in TRITON_DTYPES.values()}  # np.float32 -> "FP32"


def check_loopback(url: str) -> None:
    """``url`` (``host:port``) must name the loopback address: the load test floods what it targets."""
    host = urlsplit(f"//{url}").hostname
    if host not in LOOPBACK_HOSTS:
        raise AmadError(f"loadtest: {url} is not a loopback address; requests go only to {', '.join(LOOPBACK_HOSTS)}")


@dataclass(frozen=True)
class GraphRequest:
    """One valid request to one served graph."""

    model: str  # the Triton model name
    inputs: dict[str, np.ndarray]  # name -> batch-of-one array
    outputs: tuple[str, ...]  # every output of the graph


def example_requests(export_dir: Path) -> list[GraphRequest]:
    """A valid batch-of-one request per exported graph: images of noise, a tokenised question or caption."""
    from amad.export.onnx_model import OnnxModel
    from amad.preprocess import Preprocess
    from amad.serving.names import triton_model_name
    from amad.serving.server import export_graphs

    requests = []
    rng = np.random.default_rng(0)
    for path in export_graphs(export_dir):
        model = OnnxModel(path)
        preprocess = Preprocess.from_dict(json.loads(model.metadata["amad.preprocess"]))
        inputs = {}
        for value in model.session.get_inputs():
            if value.type not in TRITON_DTYPES:
                raise AmadError(f"{path}: input {value.name} of type {value.type} cannot be load-tested")
            if value.name == "tokens":
                inputs["tokens"] = preprocess.tokenize(["what color is the large circle?"]).numpy().astype(np.int64)
            else:
                shape = [1, *value.shape[1:]]
                inputs[value.name] = rng.standard_normal(shape).astype(TRITON_DTYPES[value.type][1])
        task, graph = model.metadata.get("amad.task", "vqa"), model.metadata.get("amad.graph", "model")
        requests.append(GraphRequest(triton_model_name(task, graph), inputs, model.output_names))
    return requests


def http_sender(url: str, timeout: float) -> Callable[[GraphRequest], None]:
    """A function sending one request with its own client (call it from one thread only)."""
    import tritonclient.http as http

    client = http.InferenceServerClient(url=url, connection_timeout=timeout, network_timeout=timeout)

    def send(request: GraphRequest) -> None:
        inputs = []
        for name, array in request.inputs.items():
            tensor = http.InferInput(name, list(array.shape), TRITON_NAMES[array.dtype.type])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        client.infer(request.model, inputs, outputs=[http.InferRequestedOutput(name) for name in request.outputs])

    return send


def run_level(
    make_sender: Callable[[], Callable[[GraphRequest], None]],
    requests: list[GraphRequest],
    concurrency: int,
    duration: float,
    max_requests: int,
) -> dict[str, Any]:
    """``concurrency`` threads sending ``requests`` in turn for ``duration`` seconds (``max_requests`` at most)."""
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker(offset: int) -> None:
        nonlocal issued
        try:
            send = make_sender()
        except Exception as error:
            with lock:
                failures.append(f"client: {error}")
            return
        index = offset
        while time.perf_counter() < deadline:
            with lock:
                if issued >= max_requests:
                    return
                issued += 1
            start = time.perf_counter()
            try:
                send(requests[index % len(requests)])
            except Exception as error:
                with lock:
                    failures.append(str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
            else:
                with lock:
                    latencies.append(time.perf_counter() - start)
            index += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3
    percentiles = {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) if len(ms) else None for q in (50, 90, 99)}
    return {
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "throughput_rps": round(len(latencies) / elapsed, 2),
        **percentiles,
        "errors": sorted(set(failures))[:5],
    }


def load_test(
    url: str,
    requests: list[GraphRequest],
    levels: list[int],
    *,
    duration: float,
    timeout: float,
    max_requests: int,
    log=print,
) -> dict[str, dict]:
    """Every concurrency level in turn against the server at ``url`` (loopback only)."""
    check_loopback(url)
    results = {}
    for level in levels:
        results[str(level)] = run_level(lambda: http_sender(url, timeout), requests, level, duration, max_requests)
        row = results[str(level)]
        log(
            f"concurrency {level}: {row['throughput_rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['failed']} failed of {row['requests']}"
        )
    return results
