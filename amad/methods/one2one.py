"""``one2one``: one-to-one attention-map distillation, teacher head i teaches student head i (row KL)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require, require_choice
from amad.contracts.method import METHODS, Method, Needs
from amad.contracts.task import GroupShape
from amad.losses.options import HEAD_MISMATCH_POLICIES


@dataclass(frozen=True)
class OneToOneSettings:
    """``distill.one2one``: what to do when the teacher has more heads than the student."""

    head_mismatch: str  # truncate: teacher heads 0..Hs-1 (the paper's baseline); mean_pool: groups of Ht/Hs

    def validate(self, key: str) -> None:
        require_choice(self.head_mismatch, HEAD_MISMATCH_POLICIES, f"{key}.head_mismatch")


@METHODS.register("one2one")
class OneToOne(Method):
    settings = OneToOneSettings
    needs = Needs(maps=True)
    term = "amad.methods.terms.one2one:OneToOneTerm"

    @classmethod
    def check(cls, settings: OneToOneSettings, key: str, groups: dict[str, tuple[GroupShape, GroupShape]]) -> None:
        for teacher, student in groups.values():
            require(
                student.heads <= teacher.heads,
                f"{student.key}.heads",
                f"one2one needs at most the teacher's {teacher.heads} heads ({teacher.key}.heads), got {student.heads}",
            )
            if settings.head_mismatch == "mean_pool":
                require(
                    teacher.heads % student.heads == 0,
                    f"{key}.head_mismatch",
                    f"mean_pool needs {student.key}.heads ({student.heads}) to divide {teacher.key}.heads "
                    f"({teacher.heads}); use truncate",
                )
