"""``one2one``: one-to-one attention-map distillation, teacher head i teaches student head i (row KL)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from amad.attention import AttentionRecord
from amad.config import require, require_choice
from amad.losses.one_to_one import HEAD_MISMATCH_POLICIES, one_to_one_loss
from amad.methods import METHODS
from amad.methods.base import Method, Needs, record_field
from amad.tasks.base import GroupShape


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

    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, None]:
        pair = self.pairs[index]
        loss = one_to_one_loss(
            record_field(teacher, "probs", pair.teacher, "teacher"),
            record_field(student, "probs", pair.student, "student"),
            head_mismatch=self.config.head_mismatch,
            query_mask=query_mask,
        )
        return loss, None
