"""What a distillation method plug-in provides, and the method registry.

A method is declared by one class (registered in :data:`METHODS`) that owns its ``params.yaml``
subsection ``distill.<name>`` (its ``settings`` dataclass), declares what it needs from the
teacher and captured from both models (:class:`Needs`), checks its settings against the shapes of
the distilled attention groups before any work, and builds its trainable term
(:class:`~amad.contracts.method_term.MethodTerm`, an ``nn.Module``) over the layer pairs. The
declaration imports no torch, so ``params.yaml`` is checked without loading it. The objective
(``amad.distill.objective``) combines the terms:
``task_w * task_loss + output_w * output_kd + attention_w * mean over layer pairs of the term``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amad.contracts.registry import Registry
from amad.contracts.task import GroupShape

if TYPE_CHECKING:
    from amad.contracts.method_term import MethodTerm


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
        sequences: the teacher's own outputs of the training inputs as training targets (stage
            ``teacher_sequences``; a generative task's, see ``Task.generative``).
    """

    teacher: bool = True
    output_distillation: bool = True
    maps: bool = False
    qkv: bool = False
    hidden: bool = False
    sequences: bool = False

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


class Method:
    """Base class of the distillation method declarations (register subclasses in :data:`METHODS`).

    Class attributes:
        name: the registered name (``distill.methods`` entry, ``distill.<name>`` section).
        settings: dataclass of ``distill.<name>``.
        needs: what the method needs (:class:`Needs`).
        artefact_file: file of the model folder that holds the method's artefacts (or None).
        term: the method's :class:`~amad.contracts.method_term.MethodTerm` subclass, or its
            ``"module:Class"`` path (imported by :meth:`build`, so the declaration needs no torch);
            None: no per-layer term (``none``, ``logit``).
    """

    name: ClassVar[str]
    settings: ClassVar[type] = NoSettings
    needs: ClassVar[Needs] = Needs()
    artefact_file: ClassVar[str | None] = None
    term: ClassVar[str | type | None] = None

    @classmethod
    def check(cls, settings: Any, key: str, groups: dict[str, tuple[GroupShape, GroupShape]]) -> None:
        """Raise ConfigError naming a key when ``settings`` cannot work on these groups.

        Args:
            settings: the method's settings.
            key: ``distill.<name>``.
            groups: ``(teacher shape, student shape)`` of every distilled group.
        """

    @classmethod
    def build(cls, settings: Any, pairs: list[LayerPair]) -> MethodTerm:
        """The method's term (:attr:`term`) over ``pairs``."""
        from amad.contracts.method_term import MethodTerm

        term = cls.term or MethodTerm
        if isinstance(term, str):
            module, _, name = term.partition(":")
            term = getattr(importlib.import_module(module), name)
        return term(cls, settings, pairs)


METHODS: Registry[Method] = Registry(
    "distillation method",
    {
        "none": "amad.methods.none",
        "logit": "amad.methods.logit",
        "one2one": "amad.methods.one2one",
        "minilm": "amad.methods.minilm",
        "hidden": "amad.methods.hidden",
        "amad": "amad.methods.amad",
        "a2d": "amad.methods.a2d",
        "sequence": "amad.methods.sequence",
    },
)
"""``distill.methods`` names -> their declarations. A new method is a :class:`Method` subclass
decorated with ``@METHODS.register("name")`` in a module that the run imports."""
