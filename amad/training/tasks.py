"""The two training jobs of the pipeline: the teacher, and one student x method distillation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from amad.attention import capture_attention
from amad.config import DistillConfig, ModelConfig, Params, to_dict
from amad.data.dataset import VQADataset
from amad.errors import AmadError
from amad.evaluation import evaluate_model
from amad.layer_mapping import pair_modules
from amad.losses import alignment_weights
from amad.models import VQAModel, load_model, save_model
from amad.models.io import load_pretrained
from amad.objective import DistillationObjective, ObjectiveConfig, ObjectiveOutput
from amad.training.checkpoint import fingerprint
from amad.training.distributed import Runtime
from amad.training.teacher_cache import TeacherCache, build_teacher_cache
from amad.training.trainer import FitResult, fit


def read_answers(data_dir: Path) -> list[str]:
    path = data_dir / "answers.json"
    if not path.exists():
        raise AmadError(f"{path}: not found; run the prepare stage first (dvc repro prepare)")
    return json.loads(path.read_text())["answers"]


def build_model(config: ModelConfig, num_answers: int, seed: int, log=print) -> VQAModel:
    torch.manual_seed(seed)
    model = VQAModel(config, num_answers)
    if config.pretrained:
        loaded, total = load_pretrained(model, config.pretrained)
        log(f"initialised {loaded}/{total} tensors from {config.pretrained}")
    return model


def _data_fingerprint(data_dir: Path) -> str:
    """Hash of the manifests and vocabulary, so a checkpoint is only resumed on the same data."""
    digest = hashlib.sha256()
    for name in ("train.jsonl", "val.jsonl", "answers.json"):
        digest.update((data_dir / name).read_bytes())
    return digest.hexdigest()


def _validation(dataset: VQADataset, device: torch.device):
    return lambda model: {"accuracy": evaluate_model(model, dataset, device=device)["accuracy"]}


def _finish(runtime: Runtime, checkpoint: Path) -> None:
    if runtime.is_main and checkpoint.exists():
        checkpoint.unlink()


def train_teacher(
    params: Params,
    data_dir: Path,
    out_dir: Path,
    runtime: Runtime,
    *,
    checkpoint_dir: Path,
    log_dir: Path | None,
    log=print,
) -> FitResult:
    """Train the teacher on ground truth and save it to ``out_dir``."""
    answers = read_answers(data_dir)
    model = build_model(params.teacher, len(answers), params.seed, log)
    train_set = VQADataset(data_dir, "train", model.preprocess, answers)
    val_set = VQADataset(data_dir, "val", model.preprocess, answers)
    objective = DistillationObjective(ObjectiveConfig(method="none"))

    def compute_loss(student: nn.Module, batch: dict) -> ObjectiveOutput:
        return objective(student_logits=student(batch["pixels"], batch["tokens"]), targets=batch["targets"])

    checkpoint = checkpoint_dir / "teacher.pt"
    result = fit(
        model,
        compute_loss,
        train_set=train_set,
        optim=params.train,
        seed=params.seed,
        runtime=runtime,
        checkpoint_path=checkpoint,
        log_dir=log_dir,
        evaluate=_validation(val_set, runtime.device),
        fingerprint=fingerprint(
            to_dict(params.teacher), to_dict(params.train), params.seed, _data_fingerprint(data_dir)
        ),
        description="teacher",
        log=log,
    )
    if runtime.is_main:
        save_model(out_dir, model.cpu(), answers, extra={"role": "teacher", "history": result.history})
    _finish(runtime, checkpoint)
    return result


class FrozenTeacher(nn.Module):
    """A teacher that stays in eval mode and never receives gradients."""

    def __init__(self, model: VQAModel) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(pixels, tokens)


def objective_config(distill: DistillConfig, method: str) -> ObjectiveConfig:
    return ObjectiveConfig(
        method=method,
        task_weight=distill.weights.task,
        logit_weight=distill.weights.logit,
        logit_temperature=distill.logit.temperature,
        attention_weight=distill.weights.attention,
        amad=distill.amad,
        head_mismatch=distill.one2one.head_mismatch,
        num_relation_heads=distill.minilm.relation_heads,
        relations=distill.minilm.relations,
    )


def layer_pairs(
    teacher: VQAModel, student: VQAModel, distill: DistillConfig
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Teacher/student module pairs over the selected groups, and each student module's group."""
    teacher_groups, student_groups = teacher.attention_groups(), student.attention_groups()
    pairs, group_of = [], {}
    for group in distill.attention.modules:
        for pair in pair_modules(teacher_groups[group], student_groups[group], distill.attention.layer_mapping):
            pairs.append(pair)
            group_of[pair[1]] = group
    return pairs, group_of


class DistillationStep:
    """``(student, batch) -> ObjectiveOutput``: teacher and student forward with the captures the method needs.

    With a :class:`TeacherCache` the teacher's outputs are looked up by the batch's sample ``index``
    instead of recomputed.
    """

    def __init__(
        self,
        teacher: FrozenTeacher,
        objective: DistillationObjective,
        group_of: dict[str, str],
        cache: TeacherCache | None = None,
    ) -> None:
        self.teacher, self.objective, self.group_of, self.cache = teacher, objective, group_of, cache
        self.alignment: dict[str, torch.Tensor] = {}

    def _masks(self, tokens: torch.Tensor) -> tuple[dict, dict]:
        query, key = {}, {}
        for module, group in self.group_of.items():
            query[module], key[module] = VQAModel.attention_masks(group, tokens)
        return query, key

    def __call__(self, student: nn.Module, batch: dict) -> ObjectiveOutput:
        pixels, tokens, targets = batch["pixels"], batch["tokens"], batch["targets"]
        method = self.objective.config.method
        if method == "none":
            return self.objective(student_logits=student(pixels, tokens), targets=targets)
        qkv = self.objective.needs_qkv
        if self.cache is not None:
            teacher_logits, teacher_capture = self.cache.lookup(batch["index"])
        else:
            with (
                torch.no_grad(),
                capture_attention(
                    self.teacher.model, self.objective.teacher_modules, qkv=qkv, detach=True
                ) as teacher_capture,
            ):
                teacher_logits = self.teacher(pixels, tokens)
        if method == "logit":
            return self.objective(
                student_logits=student(pixels, tokens), teacher_logits=teacher_logits, targets=targets
            )
        inner = student.module if hasattr(student, "module") else student
        with capture_attention(inner, self.objective.student_modules, qkv=qkv) as student_capture:
            student_logits = student(pixels, tokens)
        query_masks, key_masks = self._masks(tokens)
        return self.objective(
            student_logits=student_logits,
            teacher_logits=teacher_logits,
            targets=targets,
            teacher_capture=teacher_capture,
            student_capture=student_capture,
            query_masks=query_masks,
            key_masks=key_masks,
        )


@torch.no_grad()
def mean_alignment(
    step: DistillationStep, student: VQAModel, dataset: VQADataset, device: torch.device, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """AMAD alignment weights ``[Ht, Hs]`` per distilled student module, averaged over ``dataset``."""
    objective = step.objective
    temperature = float(objective.temperature.value())
    sums: dict[str, torch.Tensor] = {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    student.eval()
    for batch in loader:
        pixels, tokens = batch["pixels"].to(device), batch["tokens"].to(device)
        with capture_attention(step.teacher.model, objective.teacher_modules, detach=True) as teacher_capture:
            step.teacher(pixels, tokens)
        with capture_attention(student, objective.student_modules, detach=True) as student_capture:
            student(pixels, tokens)
        query_masks, _ = step._masks(tokens)
        for teacher_name, student_name in objective.layer_pairs:
            weights = alignment_weights(
                teacher_capture.probs(teacher_name),
                student_capture.probs(student_name),
                temperature=temperature,
                query_mask=query_masks[student_name],
            )
            sums[student_name] = sums.get(student_name, 0) + weights.sum(0).cpu()
    return {name: total / len(dataset) for name, total in sums.items()}


def distill_student(
    params: Params,
    student_name: str,
    method: str,
    teacher_dir: Path,
    data_dir: Path,
    out_dir: Path,
    runtime: Runtime,
    *,
    checkpoint_dir: Path,
    log_dir: Path | None,
    log=print,
) -> FitResult:
    """Distil ``students.<student_name>`` from the teacher with ``method`` and save it to ``out_dir``."""
    if method not in params.distill.methods:
        raise AmadError(f"params.yaml: distill.methods: {method!r} is not listed ({list(params.distill.methods)})")
    seed = params.seed if params.distill.seed is None else params.distill.seed
    loaded = load_model(teacher_dir, device=runtime.device)
    teacher = FrozenTeacher(loaded.model)
    answers = loaded.answers
    student = build_model(params.student(student_name), len(answers), seed, log)
    if student.preprocess != loaded.preprocess:
        raise AmadError(
            f"params.yaml: students.{student_name}: image_size / context_length must match the teacher's "
            f"({loaded.preprocess.image_size}, {loaded.preprocess.context_length})"
        )
    pairs, group_of = layer_pairs(loaded.model, student, params.distill)
    config = objective_config(params.distill, method)
    map_sizes = None
    if method == "amad" and config.amad.variant == "projection":
        probe = next(
            iter(torch.utils.data.DataLoader(VQADataset(data_dir, "val", student.preprocess, answers), batch_size=1))
        )
        with torch.no_grad(), capture_attention(student, [s for _, s in pairs]) as capture:
            student(probe["pixels"], probe["tokens"])
        map_sizes = {s: capture.probs(s).shape[-2] * capture.probs(s).shape[-1] for _, s in pairs}
    objective = DistillationObjective(
        config, pairs if method in ("one2one", "minilm", "amad") else [], map_sizes=map_sizes
    )
    train_set = VQADataset(data_dir, "train", student.preprocess, answers)
    cache = None
    if method != "none":
        cache = build_teacher_cache(
            teacher,
            train_set,
            objective.teacher_modules,
            qkv=objective.needs_qkv,
            device=runtime.device,
            batch_size=params.distill.train.batch_size,
            max_mib=params.distill.teacher_cache_mib,
            log=log if runtime.is_main else lambda _: None,
        )
    step = DistillationStep(teacher, objective, group_of, cache)
    val_set = VQADataset(data_dir, "val", student.preprocess, answers)
    name = f"{student_name}-{method}"
    checkpoint = checkpoint_dir / f"{name}.pt"
    result = fit(
        student,
        step,
        train_set=train_set,
        optim=params.distill.train,
        seed=seed,
        runtime=runtime,
        checkpoint_path=checkpoint,
        objective=objective,
        log_dir=log_dir,
        evaluate=_validation(val_set, runtime.device),
        description=name,
        log=log,
        fingerprint=fingerprint(
            to_dict(params.student(student_name)),
            to_dict(params.distill),
            method,
            seed,
            _data_fingerprint(data_dir),
            (teacher_dir / "config.json").read_text(),
        ),
    )
    if runtime.is_main:
        files = {}
        if method == "amad":
            files["alignment.safetensors"] = mean_alignment(step, student, val_set, runtime.device)
        extra = {
            "role": "student",
            "student": student_name,
            "method": method,
            "history": result.history,
            "layer_pairs": [list(p) for p in objective.layer_pairs],
            "temperature": float(objective.temperature.value()),
        }
        save_model(out_dir, student.cpu(), answers, extra=extra, files=files)
    _finish(runtime, checkpoint)
    return result
