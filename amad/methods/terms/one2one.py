"""The ``one2one`` term: teacher head i teaches student head i (row KL; see :mod:`amad.methods.one2one`)."""

from __future__ import annotations

from torch import Tensor

from amad.contracts.method_term import MethodTerm, record_field
from amad.distill.capture import AttentionRecord
from amad.losses.one_to_one import one_to_one_loss


class OneToOneTerm(MethodTerm):
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
