"""Serve an exported amad ONNX model from a real Triton server started by PyTriton.

PyTriton (``nvidia-pytriton``) ships a ``tritonserver`` binary that runs on the CPU with its
python backend; the model runs in ONNX Runtime inside it. PyTriton pins ``numpy<2``, so it lives
in its own virtual environment (``make triton-venv`` creates ``.triton-venv``)::

    .triton-venv/bin/python amad/serving/pytriton_server.py amad_vqa=exported/h4-minilm/model.onnx
    .triton-venv/bin/python amad/serving/pytriton_server.py \
        amad_retrieval_image=exported/h2-amad/image.onnx amad_retrieval_text=exported/h2-amad/text.onnx

(``amad serve exported/NAME`` writes this command: it names each graph as the model repository does.)

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
    parser.add_argument("models", nargs="+", metavar="NAME=FILE", help="a Triton model name and its exported graph")
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
    for name, path in models:
        if not name or not path or not os.path.isfile(path):
            parser.error(f"{name}={path}: expected NAME=FILE naming an existing .onnx file")
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
        sessions = {name: ort.InferenceSession(path, providers=["CPUExecutionProvider"]) for name, path in models}
        published = {
            name: {k: v for k, v in session.get_modelmeta().custom_metadata_map.items() if k.startswith("amad.")}
            for name, session in sessions.items()
        }
        _bind_metadata(triton, published, ModelConfig, Tensor)  # first: ready before the graphs it describes
        for name, path in models:
            session = sessions[name]
            triton.bind(
                model_name=name,
                infer_func=_infer_function(session, batch),
                inputs=[_tensor(Tensor, value) for value in session.get_inputs()],
                outputs=[_tensor(Tensor, value) for value in session.get_outputs()],
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
