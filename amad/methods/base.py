"""What a distillation method plug-in provides.

A method is one class (registered in :data:`amad.methods.METHODS`) that owns its ``params.yaml``
subsection ``distill.<name>`` (its ``settings`` dataclass), declares what it needs from the
teacher and captured from both models (:class:`Needs`), checks its settings against the shapes of
the distilled attention groups before any work, and returns its term for each distilled layer
pair. The objective (``amad.objective``) combines the terms:
``task_w * task_loss + output_w * output_kd + attention_w * mean over layer pairs of the term``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from amad.attention import AttentionRecord
from amad.tasks.base import GroupShape


@dataclass(frozen=True)
class NoSettings:
    """The settings of a method that has none (``distill.<name>: {}``)."""


@dataclass(frozen=True)
class Needs:
    """What a method needs.

    Attributes:
        teacher: the teacher's outputs (all methods but ``none``).
        output_distillation: the task's output-distillation term is part of the objective.
        maps: attention probabilities of the paired modules.
        qkv: per-head q, k, v of the paired modules.
        hidden: the hidden state after each paired module's block.
    """

    teacher: bool = True
    output_distillation: bool = True
    maps: bool = False
    qkv: bool = False
    hidden: bool = False

    @property
    def layers(self) -> bool:
        """Whether the method has a per-layer term (and so needs layer pairs)."""
        return self.maps or self.qkv or self.hidden


@dataclass(frozen=True)
class LayerPair:
    """One teacher module that teaches one student module.

    Attributes:
        teacher: teacher module path.
        student: student module path.
        group: the attention group both belong to (``vision_self``, ...).
        teacher_shape: shape of the teacher's stack in that group.
        student_shape: shape of the student's stack in that group.
    """

    teacher: str
    student: str
    group: str
    teacher_shape: GroupShape
    student_shape: GroupShape


class Method(nn.Module):
    """Base class of the distillation methods; an ``nn.Module`` so learned parts train with the student.

    Args:
        settings: the method's ``distill.<name>`` section (an instance of ``settings``).
        pairs: the distilled layer pairs (empty for methods without a per-layer term).
    """

    name: ClassVar[str]
    settings: ClassVar[type] = NoSettings
    needs: ClassVar[Needs] = Needs()
    artefact_file: ClassVar[str | None] = None  # file of the model folder that holds its artefacts

    def __init__(self, settings: Any, pairs: list[LayerPair]) -> None:
        super().__init__()
        self.config = settings
        self.pairs = list(pairs)
        if self.needs.layers and not self.pairs:
            raise ValueError(f"method {self.name!r} needs at least one attention layer pair")

    @classmethod
    def check(cls, settings: Any, key: str, groups: dict[str, tuple[GroupShape, GroupShape]]) -> None:
        """Raise ConfigError naming a key when ``settings`` cannot work on these groups.

        Args:
            settings: the method's settings.
            key: ``distill.<name>``.
            groups: ``(teacher shape, student shape)`` of every distilled group.
        """

    def set_progress(self, fraction: float) -> None:
        """Training progress in ``[0, 1]`` (for scheduled settings)."""

    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        """The term of layer pair ``index`` and its artefact for this batch (or None).

        Args:
            index: position in ``self.pairs``.
            teacher: the teacher module's record (detached).
            student: the student module's record (with gradients).
            query_mask: ``[B, q]`` bool, True for real query rows (None: all real).
            key_mask: ``[B, k]`` bool, True for real keys (None: all real).
        """
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """Scalars to log each step and store with the model (e.g. a learned temperature)."""
        return {}


def record_field(record: AttentionRecord | None, field: str, module: str, side: str) -> Tensor:
    """``record.<field>``, or KeyError saying which module did not record it."""
    value = None if record is None else getattr(record, field)
    if value is None:
        raise KeyError(f"no {side} {field} recorded for '{module}': was the module captured with it?")
    return value
