"""``minilm``: MiniLMv2-style relation distillation (q-q, k-k, v-v relations re-split into relation heads)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import child, require, require_choice
from amad.contracts.method import METHODS, Method, Needs
from amad.contracts.task import GroupShape
from amad.losses.options import RELATIONS


@dataclass(frozen=True)
class RelationSettings:
    """``distill.minilm``."""

    relation_heads: int  # must divide the attention width of every distilled teacher and student stack
    relations: tuple[str, ...]  # any of qq, kk, vv

    def validate(self, key: str) -> None:
        require(self.relation_heads >= 1, f"{key}.relation_heads", f"must be >= 1, got {self.relation_heads}")
        require(len(self.relations) > 0, f"{key}.relations", f"list some of {', '.join(RELATIONS)}")
        for index, relation in enumerate(self.relations):
            require_choice(relation, RELATIONS, child(f"{key}.relations", index))


@METHODS.register("minilm")
class RelationDistillation(Method):
    settings = RelationSettings
    needs = Needs(maps=True, qkv=True)  # maps too: the captured student runs the same (unfused) attention
    term = "amad.methods.terms.minilm:RelationTerm"

    @classmethod
    def check(cls, settings: RelationSettings, key: str, groups: dict[str, tuple[GroupShape, GroupShape]]) -> None:
        for shapes in groups.values():
            for shape in shapes:
                require(
                    shape.width % settings.relation_heads == 0,
                    f"{key}.relation_heads",
                    f"{settings.relation_heads} does not divide the attention width {shape.width} of {shape.key}",
                )
