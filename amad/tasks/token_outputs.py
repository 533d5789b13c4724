"""Output distillation of a generative task: KL over the vocabulary at every target position, from
the teacher's top-k logits (``distill.output.top_k``), padding left out. A :class:`~amad.contracts.task.Task`
mixin: the model's ``logits [B, L-1, V]`` are teacher-forced on the batch's ``target_key`` tokens."""

from __future__ import annotations

from typing import Any, ClassVar


class TokenOutputDistillation:
    """``teacher_targets`` and ``output_distillation`` of a task whose ``target_key`` batch entry
    holds the target tokens ``[B, L]`` (captioning: ``tokens``; translation: ``target``)."""

    target_key: ClassVar[str]

    def teacher_targets(self, outputs: dict[str, Any], batch: dict, top_k: int | None) -> dict[str, Any]:
        """The teacher's ``top_k`` logits and their ids per target position (None or >= V: the logits)."""
        logits = outputs["logits"]
        if top_k is None or top_k >= logits.shape[-1]:
            return {"logits": logits}
        values, ids = logits.topk(top_k, dim=-1)
        return {"top_logits": values, "top_ids": ids}

    def output_distillation(
        self, student_outputs: dict[str, Any], teacher_targets: dict[str, Any], batch: dict, temperature: float
    ) -> Any:
        from amad.losses.next_token import target_mask
        from amad.losses.topk_kd import top_k_kd_loss, top_k_logits

        if "logits" in teacher_targets:
            values, ids = top_k_logits(teacher_targets["logits"], None)
        else:
            values, ids = teacher_targets["top_logits"], teacher_targets["top_ids"]
        mask = target_mask(batch[self.target_key])
        return top_k_kd_loss(student_outputs["logits"], values, ids, mask, temperature=temperature)
