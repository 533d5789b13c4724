"""A new method and a new task are one class each plus registration: nothing else in amad changes.

The toy method distils the teacher's attention entropy; the toy task answers from the image
alone (a classifier over the VQA data with the question ignored). Both run through the real
training jobs, save and load.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from helpers import TASK, prepared_data, tiny_params_dict
from torch import Tensor, nn

from amad.config.params import parse_params
from amad.config.typed import require
from amad.contracts.method import METHODS, Method, Needs
from amad.contracts.method_term import MethodTerm, record_field
from amad.contracts.task import TASKS
from amad.models import load_model
from amad.tasks.vqa.task import VQATask
from amad.training.distributed import Runtime
from amad.training.jobs import distill_student, train_teacher

CPU = Runtime(rank=0, world_size=1, device=torch.device("cpu"))


@dataclass(frozen=True)
class EntropySettings:
    scale: float

    def validate(self, key: str) -> None:
        require(self.scale > 0, f"{key}.scale", f"must be > 0, got {self.scale}")


class EntropyTerm(MethodTerm):
    """Match the mean attention entropy of each layer (a toy, but a real gradient)."""

    def layer_term(self, index, teacher, student, query_mask, key_mask):
        pair = self.pairs[index]

        def entropy(maps: Tensor) -> Tensor:
            return -(maps * maps.clamp_min(1e-9).log()).sum(-1).mean()

        teacher_maps = record_field(teacher, "probs", pair.teacher, "teacher")
        student_maps = record_field(student, "probs", pair.student, "student")
        return self.config.scale * (entropy(teacher_maps) - entropy(student_maps)) ** 2, None


class EntropyMatching(Method):
    settings = EntropySettings
    needs = Needs(maps=True)
    term = EntropyTerm


class ImageOnly(nn.Module):
    """The VQA model with the question replaced by padding: answers from the image alone."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.num_answers = inner.num_answers

    def forward(self, pixels: Tensor, tokens: Tensor) -> Tensor:
        blank = torch.zeros_like(tokens)
        blank[:, 0], blank[:, 1] = 49406, 49407  # start, end
        return self.inner(pixels, blank)


class ImageOnlyTask(VQATask):
    def build_model(self, config, state):
        return ImageOnly(super().build_model(config, state))

    def module_groups(self, model):
        groups = model.inner.attention_groups()
        return {group: [f"inner.{name}" for name in names] for group, names in groups.items()}


@pytest.fixture
def registered():
    METHODS.register("entropy")(EntropyMatching)
    TASKS.register("image_only")(ImageOnlyTask)
    yield
    METHODS.unregister("entropy")
    TASKS.unregister("image_only")


def test_a_toy_method_and_a_toy_task_run_through_the_training_jobs(registered, tmp_path):
    data = prepared_data(tmp_path / "prepared", train=32, val=16, test=16)
    raw = tiny_params_dict(task="image_only")
    raw["distill"]["methods"] = ["entropy"]
    raw["distill"]["entropy"] = {"scale": 0.5}
    raw["distill"]["weights"]["attention"]["entropy"] = 1.0  # a new attention method brings its weight
    params = parse_params(raw)
    common = {"checkpoint_dir": tmp_path / "checkpoints", "log_dir": None, "log": lambda _: None}
    train_teacher(params, data, tmp_path / "teacher", CPU, **common)
    result = distill_student(params, "h2", "entropy", tmp_path / "teacher", data, tmp_path / "student", CPU, **common)
    assert "train/attention" in result.final and result.final["train/attention"] >= 0
    loaded = load_model(tmp_path / "student")
    assert loaded.task_name == "image_only" and isinstance(loaded.model, ImageOnly)
    assert loaded.extra["method"] == "entropy" and loaded.extra["layer_pairs"][0][0].startswith("inner.")
    raw["distill"]["entropy"] = {"scale": -1.0}
    with pytest.raises(Exception, match=r"distill\.entropy\.scale: must be > 0"):
        parse_params(raw)


def test_unknown_plug_in_names_list_the_registered_ones():
    raw = tiny_params_dict(task="ocr")
    with pytest.raises(
        Exception, match=r"task: unknown task 'ocr'; registered: captioning, retrieval, translation, vqa"
    ):
        parse_params(raw)
    raw = tiny_params_dict()
    raw["distill"]["methods"] = ["amad", "distil"]
    with pytest.raises(Exception, match=r"distill\.methods\[1\]: unknown distillation method 'distil'; registered: "):
        parse_params(raw)
    assert TASK.name == "vqa"
