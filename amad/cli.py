"""The ``amad`` command line.

amad check [PARAMS]           validate a params file (both tiers), running and writing nothing
amad predict --model M ...    predict with a model folder or export, through its task (--server: a Triton server)
amad runs                     the runs of dvc exp show: metric per model, speed-ups, changed params (120 columns)
amad serve EXPORT             serve an export folder with PyTriton (e.g. deployed/model)
amad loadtest EXPORT          measure a served export under concurrent load
amad modules MODEL_DIR        list a saved model's attention modules by group (for params.yaml)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amad.errors import AmadError
from amad.pipeline import paths


def _check(args: argparse.Namespace) -> None:
    from amad.config.params import load_params

    params = load_params(args.params, models=not args.structure_only)
    tiers = "structure" if args.structure_only else "structure and models"
    print(f"{args.params}: valid ({tiers}; task {params.task}, {len(params.model_names())} models)")


def _runs(args: argparse.Namespace) -> None:
    from amad.report.runs import METRIC_FILES, dvc_runs, read_runs, table

    extra = ["-A"] if args.all_commits else []
    runs = read_runs(dvc_runs(extra), metric_files=None if args.all_metrics else METRIC_FILES)
    print(table(runs, width=args.width), end="")


def _modules(args: argparse.Namespace) -> None:
    from amad.models import load_model

    loaded = load_model(args.model)
    for group, names in loaded.task.module_groups(loaded.model).items():
        print(f"{group}:")
        for name in names:
            print(f"  {name}")


def _predict(args: argparse.Namespace, task_flags: list[str]) -> None:
    from amad.contracts.task import get_task

    if (args.model is None) == (args.server is None):
        raise AmadError("amad predict: give --model (a model folder, an export) or --server (a Triton server)")
    if args.server is not None:
        from amad.serving.client import server_source

        if args.int8:
            raise AmadError("--int8 picks exported files; a server serves what its repository holds (see --tensorrt)")
        source = server_source(args.server, export_dir=args.export, tensorrt=args.tensorrt)
    else:
        from amad.serving.sources import load_source

        if args.export or args.tensorrt:
            raise AmadError("--export and --tensorrt are for --server")
        source = load_source(args.model, int8=args.int8)
    task = get_task(source.task_name)
    parser = argparse.ArgumentParser(
        prog=f"amad predict {'--server' if args.server else '--model'} {args.server or args.model}",
        description=f"a {task.name} model's prediction flags",
    )
    task.predict_arguments(parser)
    task.predict(source, parser.parse_args(task_flags))


def _serve(args: argparse.Namespace) -> None:
    import os

    from amad.serving.server import Ports, served_graphs, server_command

    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    if args.beams is not None and args.beams < 1:
        raise AmadError(f"--beams: must be >= 1, got {args.beams}")
    command = server_command(
        served_graphs(Path(args.export)),
        ports,
        host=args.host,
        dynamic_batching=not args.no_dynamic_batching,
        beams=args.beams,
    )
    print(
        "note: on a host without a GPU, Triton logs CUDA / NVML errors while it starts (no driver found): they "
        "are harmless, the models run on the CPU",
        file=sys.stderr,
        flush=True,
    )
    os.execv(command[0], command)  # the server replaces this process: signals reach it directly


def _loadtest(args: argparse.Namespace) -> None:
    from amad.serving.report import run_load_test

    try:
        levels = [int(level) for level in args.concurrency.split(",")]
    except ValueError:
        raise AmadError(f"--concurrency: expected comma-separated integers, got {args.concurrency!r}") from None
    if not levels or min(levels) < 1 or args.duration <= 0 or args.timeout <= 0 or args.max_requests < 1:
        raise AmadError("--concurrency levels, --duration, --timeout and --max-requests must be positive")
    run_load_test(
        Path(args.export),
        Path(args.data),
        levels,
        args.duration,
        args.timeout,
        args.max_requests,
        args.url,
        Path(args.out),
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="amad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a params file without running anything")
    check.add_argument("params", nargs="?", default="params.yaml", help="default: params.yaml")
    check.add_argument(
        "--structure-only", action="store_true", help="types, choices, files only (no torch, timm or open_clip)"
    )
    check.set_defaults(run=_check)
    runs = commands.add_parser("runs", help="compare the runs of dvc exp show within a terminal's width")
    runs.add_argument("--width", type=int, default=120, help="columns of the terminal (default 120)")
    runs.add_argument("--all-metrics", action="store_true", help="every metric file, not only eval and latency")
    runs.add_argument("-A", "--all-commits", action="store_true", help="the experiments of every commit")
    runs.set_defaults(run=_runs)
    predict = commands.add_parser(
        "predict",
        add_help=False,
        help="predict with a model folder, an export or a Triton server (the task's own flags follow)",
        description="Predict with a saved model, its export or a served model, through the model's task. The task "
        "adds its own flags: `amad predict --model M --help` lists them (VQA: --image --question, or --manifest "
        "--out; retrieval: --image and --caption, repeated).",
    )
    predict.add_argument("-h", "--help", action="store_true", help="this help; with --model / --server: the task's")
    predict.add_argument("--model", help="models/NAME, exported/NAME or one exported .onnx file")
    predict.add_argument("--server", help="a Triton server serving an amad model (host:port)")
    predict.add_argument("--int8", action="store_true", help="an export folder: use its .int8.onnx files")
    predict.add_argument("--export", help="--server: the export folder it serves (for servers without amad parameters)")
    predict.add_argument("--tensorrt", action="store_true", help="--server: use its TensorRT engines (_trt models)")
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
    serve.add_argument(
        "--beams",
        type=int,
        default=None,
        help="a generative model's beams (its loop runs in the server; default greedy)",
    )
    serve.set_defaults(run=_serve)
    loadtest = commands.add_parser("loadtest", help="measure a served export under concurrent load (loopback only)")
    loadtest.add_argument("export", help="exported/NAME (served as the model repository names its graphs)")
    loadtest.add_argument(
        "--data", default=str(paths.PREPARED), help="prepared data: requests are its validation samples"
    )
    loadtest.add_argument("--url", help="a running server (host:port on the loopback); default: start one per mode")
    loadtest.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    loadtest.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    loadtest.add_argument("--timeout", type=float, default=5.0, help="seconds one request may take")
    loadtest.add_argument("--max-requests", type=int, default=100_000, help="at most this many requests per level")
    loadtest.add_argument("--out", default=str(paths.SERVING))
    loadtest.set_defaults(run=_loadtest)
    args, task_flags = parser.parse_known_args(argv)
    if args.command == "predict" and args.help and args.model is None and args.server is None:
        predict.print_help()
        return
    if args.command == "predict" and args.help:
        task_flags.append("--help")
    elif task_flags and args.command != "predict":
        parser.error(f"unrecognized arguments: {' '.join(task_flags)}")
    try:
        args.run(args, task_flags) if args.command == "predict" else args.run(args)
    except AmadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
