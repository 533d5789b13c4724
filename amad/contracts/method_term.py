"""A distillation method's trainable term: what it computes for each distilled layer pair.

An ``nn.Module``, so the learned parts of a method (a learned temperature, projections) train with
the student. :meth:`~amad.contracts.method.Method.build` makes one; the objective
(``amad.distill.objective``) holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from amad.contracts.method import LayerPair, Method

if TYPE_CHECKING:
    from amad.distill.capture import AttentionRecord


class MethodTerm(nn.Module):
    """Base class of the method terms.

    Args:
        method: the method's declaration (its name, needs and artefact file are read from it).
        settings: the method's ``distill.<name>`` section (an instance of ``method.settings``).
        pairs: the distilled layer pairs (empty for methods without a per-layer term).
    """

    def __init__(self, method: type[Method], settings: Any, pairs: list[LayerPair]) -> None:
        super().__init__()
        self.name = method.name
        self.needs = method.needs
        self.artefact_file = method.artefact_file
        self.config = settings
        self.pairs = list(pairs)
        if self.needs.layers and not self.pairs:
            raise ValueError(f"method {self.name!r} needs at least one attention layer pair")

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
