"""Which teacher layer teaches which student layer."""

from __future__ import annotations

from collections.abc import Sequence

STRATEGIES = ("uniform", "last")


def map_layers(
    num_teacher_layers: int,
    num_student_layers: int,
    mapping: str | Sequence[Sequence[int]] = "uniform",
) -> list[tuple[int, int]]:
    """Pairs ``(teacher_layer, student_layer)``.

    Args:
        num_teacher_layers: depth of the teacher stack.
        num_student_layers: depth of the student stack.
        mapping: ``"uniform"`` (student layer ``s`` learns from teacher layer
            ``ceil((s + 1) * Nt / Ns) - 1``, so the last layers are always paired), ``"last"`` (only
            the last layers), or explicit ``[[teacher, student], ...]`` pairs (negative indices
            count from the end).
    """
    if num_teacher_layers < 1 or num_student_layers < 1:
        raise ValueError(
            f"layer mapping needs at least one layer on each side, got teacher={num_teacher_layers}, "
            f"student={num_student_layers}"
        )
    if mapping == "uniform":
        return [(-(-(s + 1) * num_teacher_layers // num_student_layers) - 1, s) for s in range(num_student_layers)]
    if mapping == "last":
        return [(num_teacher_layers - 1, num_student_layers - 1)]
    if isinstance(mapping, str):
        raise ValueError(
            f"layer mapping must be one of {STRATEGIES} or a list of [teacher, student] pairs, got {mapping!r}"
        )
    pairs = []
    for pair in mapping:
        if len(pair) != 2:
            raise ValueError(f"layer mapping pairs must be [teacher, student], got {list(pair)}")
        teacher, student = (int(index) for index in pair)
        for side, index, size in (("teacher", teacher, num_teacher_layers), ("student", student, num_student_layers)):
            if not -size <= index < size:
                raise ValueError(
                    f"layer mapping pair {list(pair)}: {side} layer {index} out of range for {size} layers"
                )
        pairs.append((teacher % num_teacher_layers, student % num_student_layers))
    if not pairs:
        raise ValueError("explicit layer mapping is empty")
    return pairs


def pair_modules(
    teacher_modules: Sequence[str],
    student_modules: Sequence[str],
    mapping: str | Sequence[Sequence[int]] = "uniform",
) -> list[tuple[str, str]]:
    """Pair module paths of one attention stack (ordered by depth) with :func:`map_layers`."""
    return [
        (teacher_modules[t], student_modules[s])
        for t, s in map_layers(len(teacher_modules), len(student_modules), mapping)
    ]
