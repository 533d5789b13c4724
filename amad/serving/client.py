"""A Triton server's amad models as graphs: ``amad predict --server host:port`` and the load test run
the task's predictor over them exactly as over local torch or ONNX graphs.

The server publishes each model's task, graph name, preprocessing and state in its config's
``amad.*`` parameters (written by :mod:`amad.serving.repository`) or its ``amad_metadata`` model (the PyTriton server), so a
client needs only the address. Needs ``tritonclient[http]`` (in amad's dev extra). Use one source
per thread: a ``tritonclient`` client is not thread-safe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from amad.contracts.graph import ModelSource, outputs_like_inputs
from amad.errors import AmadError
from amad.serving.sources import source_from_metadata

NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def _http():
    try:
        import tritonclient.http as http
    except ImportError:
        raise AmadError("a Triton client needs tritonclient: pip install 'tritonclient[http]'") from None
    return http


class TritonGraph:
    """One served Triton model, called like an exported graph: ``graph(*inputs) -> {output: array}``
    (numpy arrays for numpy inputs, torch tensors for tensors); ``metadata``: its ``amad.*`` entries,
    as an exported graph's (what a predictor reads of it)."""

    def __init__(self, client: Any, model: str, config: dict, metadata: dict[str, str] | None = None) -> None:
        self.client, self.model, self.metadata = client, model, metadata or {}
        self.inputs = [(tensor["name"], tensor["data_type"].removeprefix("TYPE_")) for tensor in config["input"]]
        self.output_names = tuple(tensor["name"] for tensor in config["output"])

    def __call__(self, *inputs: Any) -> dict[str, Any]:
        http = _http()
        requests = []
        for (name, dtype), value in zip(self.inputs, inputs, strict=True):
            array = np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value, NUMPY_TYPES[dtype])
            request = http.InferInput(name, list(array.shape), dtype)
            request.set_data_from_numpy(array)
            requests.append(request)
        outputs = [http.InferRequestedOutput(name) for name in self.output_names]
        result = self.client.infer(self.model, requests, outputs=outputs)
        return outputs_like_inputs(inputs, {name: np.array(result.as_numpy(name)) for name in self.output_names})


def server_source(
    url: str, *, export_dir: str | Path | None = None, tensorrt: bool = False, timeout: float = 60.0
) -> ModelSource:
    """The amad model a Triton server at ``url`` serves (``tensorrt``: its ``_trt`` engines).

    Its task, preprocessing and state come from the served configs' ``amad.*`` parameters (a model
    repository's), from its ``amad_metadata`` model (``amad serve``'s PyTriton server), or from
    ``export_dir``, the export folder it serves.
    """
    http = _http()
    client = http.InferenceServerClient(url=url, connection_timeout=timeout, network_timeout=timeout)
    if export_dir is not None:
        return _exported_on_server(client, url, Path(export_dir), tensorrt)
    published = _published_metadata(client, url)
    if published is not None:
        graphs, metadata = {}, {}
        for name, parameters in published.items():
            if name.endswith("_trt") == tensorrt and "amad.task" in parameters:
                metadata = metadata or parameters
                graph = TritonGraph(client, name, client.get_model_config(name), parameters)
                graphs[parameters.get("amad.graph", "model")] = graph
        return source_from_metadata(metadata, graphs, url)
    try:
        index = client.get_model_repository_index()
    except Exception as error:
        raise AmadError(
            f"--server {url}: cannot list its models ({str(error).splitlines()[0][:200]}); "
            "give the export folder it serves (--export exported/NAME)"
        ) from None
    graphs, metadata = {}, {}
    for entry in index:
        name = entry["name"]
        if entry.get("state", "READY") != "READY" or name.endswith("_trt") != tensorrt:
            continue
        config = client.get_model_config(name)
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        if "amad.task" in parameters:
            metadata = metadata or parameters
            graphs[parameters.get("amad.graph", "model")] = TritonGraph(client, name, config, parameters)
    if not graphs:
        raise AmadError(
            f"--server {url}: no served model publishes amad.* parameters (a PyTriton server does not): "
            "give the export folder it serves (--export exported/NAME)"
        )
    return source_from_metadata(metadata, graphs, url)


METADATA_MODEL = "amad_metadata"  # amad/serving/pytriton_server.py publishes the graphs' metadata in it


def _published_metadata(client: Any, url: str) -> dict[str, dict[str, str]] | None:
    """``{model: {amad.* key: value}}`` from the server's ``amad_metadata`` model; None without one."""
    http = _http()
    try:
        if not client.is_model_ready(METADATA_MODEL):
            return None
    except Exception:
        return None
    request = http.InferInput("request", [1], "INT32")
    request.set_data_from_numpy(np.zeros(1, np.int32))
    try:
        result = client.infer(METADATA_MODEL, [request], outputs=[http.InferRequestedOutput("metadata")])
        return json.loads(result.as_numpy("metadata")[0])
    except Exception as error:
        raise AmadError(f"--server {url}: its {METADATA_MODEL} model did not answer ({str(error)[:200]})") from None


def _exported_on_server(client: Any, url: str, export_dir: Path, tensorrt: bool) -> ModelSource:
    from amad.contracts.task import get_task
    from amad.serving.server import served_graphs, served_metadata

    graphs, metadata = {}, {}
    for name, path in served_graphs(export_dir).items():
        name = f"{name}_trt" if tensorrt else name
        try:
            config = client.get_model_config(name)
        except Exception as error:
            raise AmadError(
                f"--server {url}: does not serve {name}, the graph {path} of --export {export_dir} "
                f"({str(error).splitlines()[0][:200]})"
            ) from None
        graph_metadata = served_metadata(path)
        metadata = metadata or graph_metadata
        graph = get_task(metadata["amad.task"]).served_graph if path.is_dir() else path.name.split(".")[0]
        graphs[graph] = TritonGraph(client, name, config, graph_metadata)
    return source_from_metadata(metadata, graphs, url)
