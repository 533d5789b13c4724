"""``distill.init``: how a student starts, and the shape checks its head strategy needs (torch-free;
the inheritance itself is :mod:`amad.student_init.inherit`)."""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require, require_choice

STRATEGIES = ("random", "inherit")
HEAD_STRATEGIES = ("first", "importance", "merge", "concat")


@dataclass(frozen=True)
class InitConfig:
    """``distill.init``: how a student starts."""

    strategy: str  # random | inherit
    heads: str  # first | importance | merge | concat (inherit only)
    batches: int  # training batches for head importance / map similarity

    def validate(self, key: str) -> None:
        require_choice(self.strategy, STRATEGIES, f"{key}.strategy")
        require_choice(self.heads, HEAD_STRATEGIES, f"{key}.heads")
        require(self.batches >= 1, f"{key}.batches", f"must be >= 1, got {self.batches}")


def check_init(config: InitConfig, teacher_shapes: dict, student_shapes: dict, key: str) -> None:
    """Raise ConfigError (naming the student's key) where its shapes do not allow the head strategy."""
    if config.strategy != "inherit":
        return
    for group, teacher in teacher_shapes.items():
        student = student_shapes[group]
        head_dim = teacher.width // teacher.heads
        student_head_dim = student.width // student.heads
        slots = student.width // head_dim
        require(
            student.width % student.heads == 0 and student_head_dim % head_dim == 0,
            f"{student.key}.heads",
            f"inheriting ({key}.strategy inherit) builds each student head from whole teacher heads of "
            f"dimension {head_dim}: {group} has width {student.width} over {student.heads} heads; the width "
            f"must be {student.heads} x k x {head_dim} with {student.heads} x k <= {teacher.heads} "
            f"(e.g. {student.heads * head_dim})",
        )
        require(
            slots <= teacher.heads,
            f"{student.key}.width",
            f"{student.width} holds {slots} teacher heads of dimension {head_dim}; inheriting "
            f"({key}.strategy inherit) needs at most the teacher's {teacher.heads} ({group})",
        )
        if config.heads == "concat":
            require(
                student.width == teacher.width,
                f"{student.key}.width",
                f"{key}.heads concat keeps every teacher head, so the teacher's width ({teacher.width}); "
                f"{group} has width {student.width} (first / importance / merge keep fewer)",
            )
        if config.heads == "merge":
            require(
                teacher.heads % slots == 0,
                f"{student.key}.heads",
                f"{key}.heads merge pools the teacher's {teacher.heads} heads into {slots} equal groups "
                f"(width {student.width} / head dimension {head_dim}), which does not divide them ({group})",
            )
