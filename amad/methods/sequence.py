"""``sequence``: sequence-level knowledge distillation (Kim & Rush 2016) for generative tasks.

The student learns from the teacher's beam-search outputs of the training inputs (decoded once by
the stage ``teacher_sequences`` with ``distill.sequence.generation``), on top of the ``logit``
objective (word-level distillation, which Kim & Rush combine with it). ``targets: replace`` puts the
teacher's output in place of every reference (an epoch has as many steps as with the ground truth);
``add`` keeps the references and adds the teacher's output as one more.
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require_choice
from amad.contracts.method import METHODS, Method, Needs
from amad.generation.config import GenerationConfig

SEQUENCE_TARGETS = ("replace", "add")


@dataclass(frozen=True)
class SequenceSettings:
    """``distill.sequence``."""

    targets: str  # replace: the teacher's output instead of each reference | add: one more reference
    generation: GenerationConfig  # how the stage teacher_sequences decodes the training inputs

    def validate(self, key: str) -> None:
        require_choice(self.targets, SEQUENCE_TARGETS, f"{key}.targets")


@METHODS.register("sequence")
class SequenceDistillation(Method):
    settings = SequenceSettings
    needs = Needs(sequences=True)
