"""What the generative tasks (captioning, translation) share of the task contract, as a
:class:`~amad.contracts.task.Task` mixin: output distillation (KL over the vocabulary at every target
position, from the teacher's top-k logits, ``distill.output.top_k``, padding left out; the model's
``logits [B, L-1, V]`` are teacher-forced on the batch's ``target_key`` tokens), the parity agreement
over the generated tokens, the state read back from an export, and the check that the generation
settings fit the models' context."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from amad.config.typed import require


class GenerativeTask:
    """The shared methods of a task whose ``target_key`` batch entry holds the target tokens ``[B, L]``
    (captioning: ``tokens``; translation: ``target``), whose predictor returns ``tokens`` and whose
    first graph (``graph_names[0]``) is the one its parity samples are named by."""

    target_key: ClassVar[str]
    graph_names: ClassVar[tuple[str, ...]]

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

    def agreement(self, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
        """Share of inputs whose generated tokens are identical."""
        graph = self.graph_names[0]
        first, second = reference[graph]["tokens"], candidate[graph]["tokens"]
        return float((first == second).all(1).float().mean())

    def report_models(self, teacher_dir: Any, student_dirs: dict[str, Any], data_dir: Any) -> tuple[Any, dict, Any]:
        """What the task's report pages draw from: the loaded teacher, the loaded students by name, and
        the validation split in the teacher's preprocessing."""
        from amad.models import load_model

        teacher = load_model(teacher_dir)
        students = {name: load_model(folder) for name, folder in student_dirs.items()}
        return teacher, students, self.dataset(data_dir, "val", teacher.preprocess, teacher.state)

    def state_from_metadata(self, metadata: dict[str, str]) -> dict:
        """The state the export specs wrote (``amad.state``), or none (older exports)."""
        return json.loads(metadata["amad.state"]) if "amad.state" in metadata else {}


def check_generation_lengths(params: Any, noun: str) -> None:
    """ConfigError naming the key where ``evaluate.generation`` or ``distill.sequence.generation`` asks
    for more tokens than the models' ``noun`` hold (``data.context_length - 1``, the end token included)."""
    context = params.data.context_length
    sequence = params.distill.settings.get("sequence")
    for key, generation in [
        ("evaluate.generation", params.evaluate.generation),
        *([("distill.sequence.generation", sequence.generation)] if sequence is not None else []),
    ]:
        require(
            generation.max_length <= context - 1,
            f"{key}.max_length",
            f"{generation.max_length} is longer than the models' {noun} ({context - 1} tokens, "
            "data.context_length - 1, the end token included)",
        )


def teacher_outputs(rows: list[dict], ids: list[str], field: str, source: str, inputs: str) -> list[str]:
    """The teacher's texts of stage ``teacher_sequences``' ``rows`` (``{"id", field}``, one per training
    input in the split's order, ``ids``), stripped; DataError naming ``source`` (the rows' file) and
    the line where the rows do not fit the split (``inputs``: what a row stands for, e.g. ``image``)."""
    from amad.errors import DataError

    rerun = "re-run the stage: dvc repro teacher_sequences"
    if len(rows) != len(ids):
        raise DataError(f"{source}: {len(rows)} teacher {field}s for {len(ids)} training {inputs}s ({rerun})")
    texts = []
    for number, (row, expected) in enumerate(zip(rows, ids), start=1):
        if not isinstance(row, dict) or row.get("id") != expected or not isinstance(row.get(field), str):
            raise DataError(
                f"{source}:{number}: expected {{'id': {expected!r}, '{field}': text}} (the training split's "
                f"{inputs} {number}), got {row!r}; {rerun}"
            )
        texts.append(row[field].strip())
    return texts
