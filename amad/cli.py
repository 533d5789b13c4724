"""The ``amad`` command line.

amad predict --model M ...    VQA: answer a question about an image; retrieval: rank captions / images
amad modules MODEL_DIR        list a saved model's attention modules by group (for params.yaml)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amad.errors import AmadError


def _modules(args: argparse.Namespace) -> None:
    from amad.models import load_model

    loaded = load_model(args.model)
    for group, names in loaded.task.module_groups(loaded.model).items():
        print(f"{group}:")
        for name in names:
            print(f"  {name}")


def source_task(source: str) -> str:
    """The task of a model folder (its config.json) or of exported files (their metadata)."""
    import json
    from pathlib import Path

    path = Path(source)
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text()).get("task", "vqa")  # amad.vqa/1 folders: VQA
    onnx_file = path / "image.onnx" if path.is_dir() else path
    if onnx_file.suffix == ".onnx" and onnx_file.is_file():
        from amad.export.onnx_model import read_metadata

        return read_metadata(onnx_file).get("amad.task", "vqa")
    raise AmadError(f"--model {source}: expected a model folder (models/NAME), an export folder or an .onnx file")


def _rank(args: argparse.Namespace) -> None:
    import json

    from amad.tasks.retrieval.predict import load_encoders, rank

    if not args.image or not args.caption:
        raise AmadError("a retrieval model ranks: give at least one --image and one --caption")
    unused = [flag for flag, value in (("--question", args.question), ("--manifest", args.manifest)) if value]
    if unused or args.out or args.top_k != 1:
        raise AmadError(
            f"a retrieval model ranks every --caption and --image; {', '.join(unused) or '--out / --top-k'} do not apply"
        )
    print(json.dumps(rank(load_encoders(args.model, int8=args.int8), args.image, args.caption), indent=2))


def _predict(args: argparse.Namespace) -> None:
    from amad.tasks.vqa.predict import load_predictor, predict_manifest, predict_question

    if source_task(args.model) == "retrieval":
        _rank(args)
        return
    if args.caption or args.int8:
        raise AmadError("--caption and --int8 are for retrieval models; a VQA model answers --question")
    if not ((args.image and args.question) or (args.manifest and args.out)):
        raise AmadError("a VQA model answers: give --image and --question, or --manifest and --out")
    if len(args.image or []) > 1:
        raise AmadError("a VQA model answers about one --image at a time (or use --manifest)")
    args.image = args.image[0] if args.image else None

    if args.top_k < 1:
        raise AmadError("--top-k must be >= 1")
    predictor = load_predictor(args.model)
    if args.manifest:
        count = predict_manifest(predictor, args.manifest, args.out, top_k=args.top_k)
        print(f"wrote {count} predictions to {args.out}")
        return
    for answer, probability in predict_question(predictor, args.image, args.question, args.top_k):
        print(f"{answer}\t{probability:.4f}")


def _serve(args: argparse.Namespace) -> None:
    import os

    from amad.serving.server import ROOT, Ports, export_graphs, server_command

    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    command = server_command(
        export_graphs(Path(args.export)), ports, host=args.host, dynamic_batching=not args.no_dynamic_batching
    )
    os.chdir(ROOT)  # where `python -m deploy.pytriton_server` is found (the graph paths are absolute)
    os.execv(command[0], command)  # the server replaces this process: signals reach it directly


def _loadtest(args: argparse.Namespace) -> None:
    from amad.serving.report import run_load_test

    try:
        levels = [int(level) for level in args.concurrency.split(",")]
    except ValueError:
        raise AmadError(f"--concurrency: expected comma-separated integers, got {args.concurrency!r}") from None
    if not levels or min(levels) < 1 or args.duration <= 0 or args.timeout <= 0 or args.max_requests < 1:
        raise AmadError("--concurrency levels, --duration, --timeout and --max-requests must be positive")
    run_load_test(Path(args.export), levels, args.duration, args.timeout, args.max_requests, args.url, Path(args.out))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="amad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="VQA: answer questions about an image; retrieval: rank captions and images"
    )
    predict.add_argument(
        "--model",
        required=True,
        help="models/NAME; VQA: or an exported .onnx / .int8.onnx file; retrieval: or exported/NAME",
    )
    predict.add_argument("--image", action="append", help="an image file (retrieval: repeat for several)")
    predict.add_argument("--question", help="VQA: the question")
    predict.add_argument("--caption", action="append", help="retrieval: a caption (repeat for several)")
    predict.add_argument("--int8", action="store_true", help="retrieval exports: use the .int8.onnx files")
    predict.add_argument("--manifest", help="JSONL manifest of questions (answers optional)")
    predict.add_argument("--out", help="where --manifest predictions go (JSONL)")
    predict.add_argument("--top-k", type=int, default=1)
    predict.set_defaults(run=_predict)
    modules = commands.add_parser("modules", help="list a saved model's attention modules by group")
    modules.add_argument("model", help="a model folder, e.g. models/teacher")
    modules.set_defaults(run=_modules)
    serve = commands.add_parser("serve", help="serve an export folder with Triton (PyTriton) until SIGTERM / Ctrl-C")
    serve.add_argument("export", help="exported/NAME")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--no-dynamic-batching", action="store_true", help="run each request alone")
    serve.set_defaults(run=_serve)
    loadtest = commands.add_parser("loadtest", help="measure a served export under concurrent load (loopback only)")
    loadtest.add_argument("export", help="exported/NAME (its graphs give the requests)")
    loadtest.add_argument("--url", help="a running server (host:port on the loopback); default: start one per mode")
    loadtest.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    loadtest.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    loadtest.add_argument("--timeout", type=float, default=5.0, help="seconds one request may take")
    loadtest.add_argument("--max-requests", type=int, default=100_000, help="at most this many requests per level")
    loadtest.add_argument("--out", default="metrics/serving.json")
    loadtest.set_defaults(run=_loadtest)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except AmadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
