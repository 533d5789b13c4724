"""Question-only baseline: the teacher's architecture trained with every image blanked.

Shows how much of the task the question alone answers (the shapes data is built so that it is
little). Usage, after `dvc repro prepare`::

    python -m research.question_only [--data data/prepared] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from amad.config.params import load_params
from amad.models.evaluation import evaluate_model
from amad.pipeline import paths
from amad.tasks.vqa.task import VQATask
from amad.training.distributed import init_runtime
from amad.training.jobs import build_model, ground_truth_loss
from amad.training.trainer import fit


class BlankImages(torch.nn.Module):
    """Runs ``model`` with all pixels set to zero."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(torch.zeros_like(pixels), tokens)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(paths.PREPARED))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--epochs", type=int, help="default: train.epochs")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    optim = replace(params.train, epochs=args.epochs) if args.epochs else params.train
    data = Path(args.data)
    task = VQATask()
    state = task.read_state(data)
    blind = BlankImages(build_model(task, params.teacher, state, params.seed))
    preprocess = task.preprocess(params.teacher)
    train_set, test_set = (task.dataset(data, split, preprocess, state) for split in ("train", "test"))

    with tempfile.TemporaryDirectory() as scratch:
        fit(
            blind,
            ground_truth_loss(task),
            train_set=train_set,
            optim=optim,
            seed=params.seed,
            runtime=init_runtime(),
            checkpoint_path=Path(scratch) / "blind.pt",
            fingerprint="question-only",
            loader_workers=params.runtime.loader_workers,
            description="question-only",
        )
    report = evaluate_model(task, blind, test_set)
    print(json.dumps({"question_only_test": report}, indent=2))
    return report


if __name__ == "__main__":
    main()
