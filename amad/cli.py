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
    for group, names in loaded.model.attention_groups().items():
        print(f"{group}:")
        for name in names:
            print(f"  {name}")


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
    modules = commands.add_parser("modules", help="list a saved model's attention modules by group")
    modules.add_argument("model", help="a model folder, e.g. models/teacher")
    modules.set_defaults(run=_modules)
    commands.add_parser("bench-losses", help="time the distillation losses (see python -m amad.bench.losses -h)")
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except AmadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
