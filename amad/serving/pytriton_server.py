"""Serve an exported amad ONNX model from a real Triton server started by PyTriton.

PyTriton (``nvidia-pytriton``) ships a ``tritonserver`` binary that runs on the CPU with its
python backend; the model runs in ONNX Runtime inside it. PyTriton pins ``numpy<2``, so it lives
in its own virtual environment (``make triton-venv`` creates ``.triton-venv``)::

    .triton-venv/bin/python amad/serving/pytriton_server.py amad_vqa=exported/h4-minilm/model.onnx
    .triton-venv/bin/python amad/serving/pytriton_server.py \
        amad_retrieval_image=exported/h2-amad/image.onnx amad_retrieval_text=exported/h2-amad/text.onnx

(``amad serve exported/NAME`` writes this command: it names each graph as the model repository does.)
A generative export is served as one model whose decode loop runs here, ``NAME=FOLDER`` with
``--loop NAME=module:Class`` (``amad serve`` adds it from the task's ``serving_loop``)::

    .triton-venv/bin/python amad/serving/pytriton_server.py amad_captioning_caption=exported/h2-amad \
        --loop amad_captioning_caption=amad.tasks.captioning.serving:Captioner [--generation '{"beams": 3, ...}']
    (translation: amad_translation_translation=... --loop ...=amad.tasks.translation.serving:Translator)

The loop class is amad's own numpy code: it is loaded from the amad package this file is part of
(that package alone, not the environment it is installed in), and needs numpy, onnxruntime and
``tokenizers`` (``make triton-venv`` installs them).

It listens on the loopback address unless ``--host`` names another one (``--host 0.0.0.0`` for
every interface). Its Python backend stub must find the interpreter's own libpython: this script re-executes itself
with ``LD_LIBRARY_PATH`` pointing at the interpreter's ``lib`` folder. SIGTERM stops it cleanly and
removes PyTriton's workspace.
This file imports only numpy, onnxruntime and pytriton, and runs as a script (no amad
installed in that venv, no checkout needed). Each ``NAME=FILE`` becomes one Triton model, its
tensors read from the graph. PyTriton cannot put parameters in a model's config, so the graphs'
``amad.*`` metadata is published by one more model, ``amad_metadata`` (no input that matters; its
output ``metadata`` is ``{model name: {key: value}}`` as JSON): ``amad predict --server`` reads it
and needs only the address.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import sysconfig


def _ensure_libpython_path() -> None:
    libdir = sysconfig.get_config_var("LIBDIR") or os.path.join(sys.base_prefix, "lib")
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    if libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in paths if p]])
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])


def _listen(config_class: type, args: argparse.Namespace) -> dict:
    """TritonConfig fields that put every endpoint on ``args.host`` (Triton's own default is every
    interface); where this PyTriton has no metrics address, the metrics endpoint is switched off."""
    import dataclasses

    fields = {field.name for field in dataclasses.fields(config_class)}
    listen = {"http_address": args.host, "http_port": args.http_port}
    listen.update(grpc_address=args.host, grpc_port=args.grpc_port)
    if "metrics_address" in fields:
        listen.update(metrics_address=args.host, metrics_port=args.metrics_port)
    else:
        listen["allow_metrics"] = False
    return listen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "models", nargs="+", metavar="NAME=FILE", help="a Triton model name and its exported graph (or folder: --loop)"
    )
    parser.add_argument(
        "--loop",
        action="append",
        default=[],
        metavar="NAME=MODULE:CLASS",
        help="serve NAME's export folder as one model, through this amad class (a generative task's decode loop)",
    )
    parser.add_argument("--generation", default=None, help="the loop's decoding settings, as JSON (default: greedy)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument(
        "--no-dynamic-batching", action="store_true", help="run each request alone (default: Triton batches them)"
    )
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching: longest wait for a batch")
    parser.add_argument(
        "--exit-timeout",
        type=int,
        default=10,
        help="seconds a stopping server waits for requests in flight and open client connections (Triton: 30)",
    )
    args = parser.parse_args()
    models = [entry.partition("=")[::2] for entry in args.models]
    loops = dict(entry.partition("=")[::2] for entry in args.loop)
    for name, path in models:
        if name in loops:
            if not os.path.isdir(path):
                parser.error(f"{name}={path}: --loop {name} serves an export folder; {path} is not one")
        elif not name or not path or not os.path.isfile(path):
            parser.error(f"{name}={path}: expected NAME=FILE naming an existing .onnx file")
    for name in set(loops) - {name for name, _ in models}:
        parser.error(f"--loop {name}: no model of that name")
    _ensure_libpython_path()

    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    # Triton waits out the exit timeout while any client holds a (keep-alive) connection open
    config = TritonConfig(**_listen(TritonConfig, args), exit_timeout_secs=args.exit_timeout)
    # SIGTERM would end the process without PyTriton's stop(), leaving its workspace (~22 MB, under
    # $PYTRITON_HOME, ~/.cache/pytriton) behind at every start: exit through the `with` instead
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Triton(config=config) as triton:
        generation = None if args.generation is None else json.loads(args.generation)
        loaded = {name: _loop(loops[name], path, generation) for name, path in models if name in loops}
        sessions = {
            name: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            for name, path in models
            if name not in loops
        }
        published = {
            name: {k: v for k, v in session.get_modelmeta().custom_metadata_map.items() if k.startswith("amad.")}
            for name, session in sessions.items()
        }
        published.update({name: loop.metadata for name, loop in loaded.items()})
        _bind_metadata(triton, published, ModelConfig, Tensor)  # first: ready before the graphs it describes
        for name, path in models:
            if name in loaded:
                loop = loaded[name]
                infer = _loop_function(loop, batch)
                inputs = [Tensor(name=n, dtype=dtype, shape=shape) for n, dtype, shape in loop.inputs]
                outputs = [Tensor(name=n, dtype=dtype, shape=shape) for n, dtype, shape in loop.outputs]
            else:
                session = sessions[name]
                infer = _infer_function(session, batch)
                inputs = [_tensor(Tensor, value) for value in session.get_inputs()]
                outputs = [_tensor(Tensor, value) for value in session.get_outputs()]
            triton.bind(
                model_name=name,
                infer_func=infer,
                inputs=inputs,
                outputs=outputs,
                # without a DynamicBatcher each request runs alone (the batch axis stays)
                config=ModelConfig(
                    max_batch_size=args.max_batch,
                    batcher=None
                    if args.no_dynamic_batching
                    else DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
                ),
            )
            print(f"serving {path} as '{name}' on http://{args.host}:{args.http_port}", flush=True)
        triton.serve()


METADATA_MODEL = "amad_metadata"


def _bind_metadata(triton, published: dict[str, dict[str, str]], config_class: type, tensor_class: type) -> None:
    """The ``amad_metadata`` model: each served model's ``amad.*`` ONNX metadata, as one JSON string."""
    import json

    import numpy as np

    payload = np.array([json.dumps(published).encode()], dtype=np.bytes_)

    def infer(requests):
        return [{"metadata": payload} for _ in requests]

    triton.bind(
        model_name=METADATA_MODEL,
        infer_func=infer,
        inputs=[tensor_class(name="request", dtype=np.int32, shape=(1,))],
        outputs=[tensor_class(name="metadata", dtype=np.bytes_, shape=(1,))],
        config=config_class(batching=False),
    )


def _amad_package():
    """The amad package this file is part of, imported alone: its folder becomes package ``amad``
    without the environment it sits in on the path (that one may hold numpy 2, which PyTriton's
    numpy < 2 cannot share a process with)."""
    import importlib.util

    if "amad" in sys.modules:
        return sys.modules["amad"]
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "amad", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["amad"] = package
    spec.loader.exec_module(package)
    return package


def _loop(target: str, folder: str, generation: dict | None):
    """An instance of ``module:Class`` (an amad module) built from the export ``folder``."""
    import importlib

    module_name, _, class_name = target.partition(":")
    if not module_name.startswith("amad.") or not class_name:
        sys.exit(f"error: --loop {target}: expected amad.<module>:<Class>")
    _amad_package()
    try:
        loop_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        sys.exit(f"error: --loop {target}: {error}")
    return loop_class(folder, generation)


def _loop_function(loop, batch):
    """A batched PyTriton inference function running ``loop`` on the request's inputs, in its order."""
    names = [name for name, _, _ in loop.inputs]

    @batch
    def infer(**tensors):
        return loop(*(tensors[name] for name in names))

    return infer


def _tensor(tensor_class: type, value):
    """A PyTriton tensor spec of an ONNX Runtime input / output (shape without the batch axis)."""
    import numpy as np

    dtypes = {
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(bool)": np.bool_,
    }
    if value.type not in dtypes:
        sys.exit(f"error: {value.name}: tensors of type {value.type} cannot be served (supported: {', '.join(dtypes)})")
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape[1:])  # symbolic axes: variable
    return tensor_class(name=value.name, dtype=dtypes[value.type], shape=shape)


def _infer_function(session, batch):
    """A batched PyTriton inference function running ``session`` on the request's named inputs."""
    inputs = [value.name for value in session.get_inputs()]
    outputs = [value.name for value in session.get_outputs()]

    @batch
    def infer(**tensors):
        return dict(zip(outputs, session.run(outputs, {name: tensors[name] for name in inputs})))

    return infer


if __name__ == "__main__":
    main()
