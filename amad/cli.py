"""The ``amad`` command line.

amad modules MODEL_DIR        list a saved model's attention modules by group (for params.yaml)
amad bench-losses [ARGS]      time the distillation losses (python -m amad.bench.losses)
"""

from __future__ import annotations

import argparse
import sys

from amad.errors import AmadError


def _modules(args: argparse.Namespace) -> None:
    from amad.models import load_model

    loaded = load_model(args.model)
    for group, names in loaded.task.module_groups(loaded.model).items():
        print(f"{group}:")
        for name in names:
            print(f"  {name}")


def _predict(args: argparse.Namespace) -> None:
    from amad.tasks.vqa.predict import load_predictor, predict_manifest, predict_question

    if args.top_k < 1:
        raise AmadError("--top-k must be >= 1")
    predictor = load_predictor(args.model)
    if args.manifest:
        count = predict_manifest(predictor, args.manifest, args.out, top_k=args.top_k)
        print(f"wrote {count} predictions to {args.out}")
        return
    for answer, probability in predict_question(predictor, args.image, args.question, args.top_k):
        print(f"{answer}\t{probability:.4f}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench-losses"]:
        from amad.bench.losses import main as bench_losses

        bench_losses(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="amad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="answer questions about images")
    predict.add_argument("--model", required=True, help="models/NAME, or an exported .onnx / .int8.onnx file")
    predict.add_argument("--image")
    predict.add_argument("--question")
    predict.add_argument("--manifest", help="JSONL manifest of questions (answers optional)")
    predict.add_argument("--out", help="where --manifest predictions go (JSONL)")
    predict.add_argument("--top-k", type=int, default=1)
    predict.set_defaults(run=_predict)
    modules = commands.add_parser("modules", help="list a saved model's attention modules by group")
    modules.add_argument("model", help="a model folder, e.g. models/teacher")
    modules.set_defaults(run=_modules)
    commands.add_parser("bench-losses", help="time the distillation losses (see python -m amad.bench.losses -h)")
    args = parser.parse_args(argv)
    if args.command == "predict" and not ((args.image and args.question) or (args.manifest and args.out)):
        parser.error("predict needs --image and --question, or --manifest and --out")
    try:
        args.run(args)
    except AmadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
