"""The two training jobs of the pipeline: the teacher, and one student x method distillation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amad.config.params import Params, distilled_groups
from amad.config.typed import to_dict
from amad.contracts.method import METHODS, LayerPair
from amad.contracts.method_term import MethodTerm
from amad.contracts.task import Task
from amad.data.preprocess import Preprocess
from amad.distill.objective import DistillationObjective, ObjectiveOutput
from amad.errors import AmadError
from amad.models import LoadedModel, load_model, save_model
from amad.models.evaluation import evaluate_model
from amad.models.io import load_pretrained
from amad.pipeline.paths import TEACHER_SEQUENCES
from amad.training.checkpoint import fingerprint
from amad.training.distillation import DistillationStep, FrozenTeacher, capture_for, layer_pairs, mean_artefacts
from amad.training.distributed import Runtime
from amad.training.sequences import sequence_training_set
from amad.training.teacher_cache import TeacherCache, build_teacher_cache
from amad.training.trainer import FitResult, fit


def build_model(task: Task, config: Any, state: dict, seed: int, log: Callable[[str], None] = print) -> nn.Module:
    """A model of ``task`` from ``config``, seeded; where the config has a ``pretrained`` model folder or
    file, its weights are loaded where they fit."""
    torch.manual_seed(seed)
    model = task.build_model(config, state)
    pretrained = getattr(config, "pretrained", None)
    if pretrained:
        loaded, total = load_pretrained(model, pretrained)
        log(f"initialised {loaded}/{total} tensors from {pretrained}")
    return model


def ground_truth_loss(task: Task) -> Callable[[nn.Module, dict], ObjectiveOutput]:
    """``(model, batch) -> ObjectiveOutput`` of the task loss alone (teacher training, baselines)."""

    def compute_loss(model: nn.Module, batch: dict) -> ObjectiveOutput:
        inner = model.module if hasattr(model, "module") else model  # under DDP
        loss = task.task_loss(model(*task.model_inputs(batch)), batch, inner.config)
        return ObjectiveOutput(total=loss, terms={"task": float(loss.detach())}, artefacts={})

    return compute_loss


def inherit_teacher(
    task: Task, teacher: nn.Module, student: nn.Module, distill: Any, train_set: Any, device: Any, log: Callable
) -> None:
    """``distill.init: inherit``: copy the teacher's weights into the student (see :mod:`amad.student_init.inherit`),
    ranking or grouping the teacher's heads on ``distill.init.batches`` training batches where needed."""
    from itertools import islice

    from torch.utils.data import DataLoader

    from amad.student_init.head_importance import head_importance, map_similarity
    from amad.student_init.inherit import inherit

    init = distill.init
    paths = [path for group in task.module_groups(teacher).values() for path in group]
    loader = DataLoader(train_set, batch_size=distill.train.batch_size, shuffle=False)

    def batches():
        for batch in islice(loader, init.batches):
            yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    scores = None
    if init.heads == "importance":
        loss = ground_truth_loss(task)
        scores = head_importance(teacher, paths, batches(), lambda model, batch: loss(model, batch).total)
    elif init.heads in ("merge", "concat"):
        scores = map_similarity(teacher, paths, (task.model_inputs(b) for b in batches()))
    counts = inherit(teacher, student, task.module_groups, distill.attention.layer_mapping, init.heads, scores)
    log(
        f"inherited {counts['inherited']} tensors from the teacher (heads: {init.heads}); {counts['random']} kept their initialisation"
    )


def _data_fingerprint(data_dir: Path) -> str:
    """Hash of the prepared folder's small files, so a checkpoint is only resumed on the same data."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(data_dir).iterdir() if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _validation(task: Task, dataset: Any, device: torch.device) -> Callable[[nn.Module], dict[str, float]]:
    metric = task.primary_metric
    return lambda model: {metric: evaluate_model(task, model, dataset, device=device)[metric]}


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
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train the teacher on the ground truth and save it to ``out_dir``."""
    task = params.task_plugin()
    task.check_batch_sizes(task.split_sizes(data_dir), {"train.batch_size": params.train.batch_size})
    state = task.read_state(data_dir)
    model = build_model(task, params.teacher, state, params.seed, log)
    preprocess = task.preprocess(params.teacher, state)
    train_set = task.dataset(data_dir, "train", preprocess, state)
    val_set = task.dataset(data_dir, "val", preprocess, state)

    checkpoint = checkpoint_dir / "teacher.pt"
    result = fit(
        model,
        ground_truth_loss(task),
        train_set=train_set,
        optim=params.train,
        seed=params.seed,
        runtime=runtime,
        checkpoint_path=checkpoint,
        loader_workers=params.runtime.loader_workers,
        log_dir=log_dir,
        evaluate=_validation(task, val_set, runtime.device),
        fingerprint=fingerprint(
            params.task, to_dict(params.teacher), to_dict(params.train), params.seed, _data_fingerprint(data_dir)
        ),
        description="teacher",
        log=log,
    )
    if runtime.is_main:
        extra = {"role": "teacher", "history": result.history, "training": result.ending}
        save_model(out_dir, task, model.cpu(), state, preprocess, extra=extra)
    _finish(runtime, checkpoint)
    return result


def distill_student(
    params: Params,
    student_name: str,
    method_name: str,
    teacher_dir: Path,
    data_dir: Path,
    out_dir: Path,
    runtime: Runtime,
    *,
    checkpoint_dir: Path,
    log_dir: Path | None,
    sequences_dir: Path = TEACHER_SEQUENCES,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Distil ``students.<student_name>`` from the teacher with ``method_name``; save it to ``out_dir``
    (``sequences_dir``: the teacher's outputs, for the ``sequence`` method)."""
    distill = params.distill
    if method_name not in distill.methods:
        raise AmadError(f"params.yaml: distill.methods: {method_name!r} is not listed ({', '.join(distill.methods)})")
    task = params.task_plugin()
    task.check_batch_sizes(task.split_sizes(data_dir), {"distill.train.batch_size": distill.train.batch_size})
    loaded, preprocess = _teacher_for(params, task, student_name, teacher_dir, runtime)
    teacher = FrozenTeacher(loaded.model)
    student = build_model(task, params.student(student_name), loaded.state, params.distill_seed, log)
    train_set = task.dataset(data_dir, "train", preprocess, loaded.state)
    if METHODS.get(method_name, "distill.methods").needs.sequences:
        train_set = sequence_training_set(task, train_set, distill.settings[method_name].targets, sequences_dir)
    if distill.init.strategy == "inherit":
        inherit_teacher(task, loaded.model, student, distill, train_set, runtime.device, log)
    method, pairs = _method_for(params, task, student_name, method_name, loaded.model, student)
    objective = DistillationObjective(
        task,
        method,
        distill.weights,
        distill.output.temperature,
        top_k=distill.output.top_k,
        model_config=params.student(student_name),
    )
    cache = _teacher_cache(params, task, method, teacher, train_set, runtime, log) if method.needs.teacher else None
    step = DistillationStep(task, teacher, objective, cache)
    val_set = task.dataset(data_dir, "val", preprocess, loaded.state)
    name = f"{student_name}-{method_name}"
    checkpoint = checkpoint_dir / f"{name}.pt"
    result = fit(
        student,
        step,
        train_set=train_set,
        optim=distill.train,
        seed=params.distill_seed,
        runtime=runtime,
        checkpoint_path=checkpoint,
        loader_workers=params.runtime.loader_workers,
        objective=objective,
        log_dir=log_dir,
        evaluate=_validation(task, val_set, runtime.device),
        description=name,
        log=log,
        fingerprint=_distillation_fingerprint(params, student_name, method_name, data_dir, teacher_dir, sequences_dir),
    )
    if runtime.is_main:
        files = {}
        if method.artefact_file is not None:
            files[method.artefact_file] = mean_artefacts(step, student, val_set, runtime.device)
        extra = {
            "role": "student",
            "student": student_name,
            "method": method_name,
            "history": result.history,
            "training": result.ending,
            "layer_pairs": [[p.teacher, p.student, p.group] for p in pairs],
            **method.summary(),
        }
        save_model(out_dir, task, student.cpu(), loaded.state, preprocess, extra=extra, files=files)
    _finish(runtime, checkpoint)
    return result


def _teacher_for(
    params: Params, task: Task, student_name: str, teacher_dir: Path, runtime: Runtime
) -> tuple[LoadedModel, Preprocess]:
    """The saved teacher, refused unless it is this run's task with the student's preprocessing."""
    loaded = load_model(teacher_dir, device=runtime.device)
    if loaded.task_name != params.task:
        raise AmadError(f"{teacher_dir}: a {loaded.task_name!r} model, but params.yaml: task is {params.task!r}")
    preprocess = task.preprocess(params.student(student_name), loaded.state)
    if preprocess != loaded.preprocess:
        raise AmadError(
            f"{teacher_dir}: the saved teacher's preprocessing differs from students.{student_name}'s; "
            "re-run train_teacher (dvc repro)"
        )
    return loaded, preprocess


def _method_for(
    params: Params, task: Task, student_name: str, method_name: str, teacher: nn.Module, student: nn.Module
) -> tuple[MethodTerm, list[LayerPair]]:
    """The method's trainable term and the layer pairs it distils (none for an output-only method)."""
    distill = params.distill
    method_class = METHODS.get(method_name, "distill.methods")
    pairs = []
    if method_class.needs.layers:
        student_key = f"students.{student_name}"
        shapes = distilled_groups(
            task, params.teacher, params.student(student_name), student_key, distill.attention.modules
        )
        pairs = layer_pairs(task, teacher, student, tuple(shapes), distill.attention.layer_mapping, shapes)
    return method_class.build(distill.settings[method_name], pairs), pairs


def _teacher_cache(
    params: Params,
    task: Task,
    method: MethodTerm,
    teacher: FrozenTeacher,
    train_set: Any,
    runtime: Runtime,
    log: Callable[[str], None],
) -> TeacherCache | None:
    """The teacher's targets of the training samples, kept in memory up to ``runtime.teacher_cache_mib``."""
    return build_teacher_cache(
        teacher,
        train_set,
        lambda: capture_for(method, teacher.model, "teacher", detach=True),
        task,
        device=runtime.device,
        batch_size=params.distill.train.batch_size,
        max_mib=params.runtime.teacher_cache_mib,
        top_k=params.distill.output.top_k,
        log=log if runtime.is_main else lambda _: None,
    )


def _distillation_fingerprint(
    params: Params, student_name: str, method_name: str, data_dir: Path, teacher_dir: Path, sequences_dir: Path
) -> str:
    """What a checkpoint must match to be resumed: every setting of this distillation, its data and
    teacher (and the teacher's outputs it learns from)."""
    distill = params.distill
    sequences = ""
    if METHODS.get(method_name, "distill.methods").needs.sequences:
        sequences = _data_fingerprint(sequences_dir)
    return fingerprint(
        to_dict(params.student(student_name)),
        to_dict(distill.init),
        to_dict(distill.train),
        to_dict(distill.attention),
        to_dict(distill.weights),
        to_dict(distill.output),
        to_dict(distill.settings[method_name]),
        method_name,
        params.distill_seed,
        _data_fingerprint(data_dir),
        (teacher_dir / "config.json").read_text(),
        sequences,
    )
