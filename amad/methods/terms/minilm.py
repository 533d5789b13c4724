"""The ``minilm`` term: q-q, k-k, v-v relation KL over relation heads (see :mod:`amad.methods.minilm`)."""

from __future__ import annotations

from torch import Tensor

from amad.contracts.method_term import MethodTerm, record_field
from amad.distill.capture import AttentionRecord
from amad.losses.relation import relation_loss


class RelationTerm(MethodTerm):
    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, None]:
        pair = self.pairs[index]
        fields = ("q", "k", "v")
        loss = relation_loss(
            tuple(record_field(teacher, f, pair.teacher, "teacher") for f in fields),
            tuple(record_field(student, f, pair.student, "student") for f in fields),
            num_relation_heads=self.config.relation_heads,
            relations=self.config.relations,
            query_mask=query_mask,
            key_mask=key_mask,
        )
        return loss, None
