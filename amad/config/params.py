"""The whole ``params.yaml``: its sections, and the checks every stage runs before any work.

``params.yaml`` is the only place a value is written down. Its sections are declared where they
are owned: training and distillation below, ``export`` / ``benchmark`` / ``serving`` / ``deploy`` by their
packages, ``data`` / ``teacher`` / ``students.*`` / ``evaluate`` by the task (``params.yaml: task``),
``distill.<method>`` by each method. The checks stop at the first problem with one line naming the
key, e.g. ``params.yaml: distill.amad.temprature: unknown key (expected one of: variant, ...)``,
in two tiers:

1. **structure** (:func:`parse_params` with ``models=False``; imports no torch, timm or
   open_clip): types, ranges, choices, keys that must agree, files that must exist;
2. **models** (:func:`check_models`): what needs the model libraries or the models' shapes
   (a timm name, an open_clip config, a checkpoint's tensors; student vs teacher shapes,
   layer-mapping ranges, relation heads dividing widths, head-count divisibility).

:func:`load_params` runs both, as every stage does before any work.

``runtime`` holds the speed-only knobs: no stage declares it as a parameter, so changing it
re-runs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amad.bench.config import BenchmarkConfig
from amad.config.typed import child, from_dict, require, require_choice
from amad.contracts.method import METHODS
from amad.contracts.task import TASKS, GroupShape, Task, get_task
from amad.distill.layer_mapping import STRATEGIES, map_layers
from amad.errors import ConfigError
from amad.export.config import ExportConfig
from amad.serving.config import AUTO, DeployConfig, ServingConfig
from amad.student_init.config import InitConfig, check_init

SECTIONS = (
    "task",
    "seed",
    "data",
    "teacher",
    "students",
    "train",
    "distill",
    "evaluate",
    "runtime",
    "export",
    "benchmark",
    "serving",
    "deploy",
)


SCHEDULES = ("cosine", "plateau")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation: AdamW with linear warm-up, then a cosine decay or a plateau schedule, stopping
    at a validation plateau (``train``, ``distill.train``; see :mod:`amad.training.plateau`)."""

    epochs: int  # the cap (cosine: its schedule reaches zero there)
    batch_size: int  # global batch (all processes together)
    lr: float
    weight_decay: float
    warmup_fraction: float
    grad_clip: float  # 0 disables clipping
    schedule: str  # cosine | plateau
    patience: int  # epochs without a validation gain that make a plateau (0: run every epoch, keep the last)
    lr_factor: float  # plateau: the learning rate's factor at each plateau
    max_reductions: int  # plateau: reductions before the next plateau ends the run

    def validate(self, key: str) -> None:
        require(self.epochs >= 1, f"{key}.epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, f"{key}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(
            0 <= self.warmup_fraction < 1, f"{key}.warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}"
        )
        require(self.grad_clip >= 0, f"{key}.grad_clip", f"must be >= 0 (0 disables clipping), got {self.grad_clip}")
        require_choice(self.schedule, SCHEDULES, f"{key}.schedule")
        require(self.patience >= 0, f"{key}.patience", f"must be >= 0 (0: every epoch runs), got {self.patience}")
        require(
            self.schedule != "plateau" or self.patience >= 1,
            f"{key}.patience",
            "schedule plateau needs patience >= 1 (the epochs without a gain that lower the learning rate)",
        )
        require(0 < self.lr_factor < 1, f"{key}.lr_factor", f"must be in (0, 1), got {self.lr_factor}")
        require(self.max_reductions >= 0, f"{key}.max_reductions", f"must be >= 0, got {self.max_reductions}")


@dataclass(frozen=True)
class AttentionSelectionConfig:
    """``distill.attention``: which attention groups are distilled, and which teacher layer teaches which."""

    modules: tuple[str, ...]
    layer_mapping: str | list[list[int]]  # uniform, last, or [[teacher_layer, student_layer], ...]

    def validate(self, key: str) -> None:
        require(len(self.modules) > 0, f"{key}.modules", "list at least one attention group")
        if isinstance(self.layer_mapping, str):
            require_choice(self.layer_mapping, STRATEGIES, f"{key}.layer_mapping")
            return
        require(len(self.layer_mapping) > 0, f"{key}.layer_mapping", "an explicit mapping needs at least one pair")
        for index, pair in enumerate(self.layer_mapping):
            require(len(pair) == 2, child(f"{key}.layer_mapping", index), f"expected [teacher, student], got {pair}")


@dataclass(frozen=True)
class LossWeightsConfig:
    """``distill.weights``: ``task * task_loss + output * output_kd + attention * mean(layer terms)``.

    ``attention`` is one weight for every method, or one per method (``{one2one: 3, minilm: 10}``):
    loss weights decide method comparisons, so each method can keep the weight tuned for it.
    """

    task: float
    output: float
    attention: float | dict[str, float]

    def validate(self, key: str) -> None:
        for name in ("task", "output"):
            require(getattr(self, name) >= 0, f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        per_method = self.attention if isinstance(self.attention, dict) else {"": self.attention}
        for method, weight in per_method.items():
            name = child(f"{key}.attention", method) if method else f"{key}.attention"
            require(weight >= 0, name, f"must be >= 0, got {weight}")

    def attention_for(self, method: str) -> float:
        """The attention-loss weight of ``method``."""
        return self.attention[method] if isinstance(self.attention, dict) else self.attention


@dataclass(frozen=True)
class OutputDistillationConfig:
    """``distill.output``: the task's output-distillation term (VQA: KD on answer logits; retrieval: similarity KD)."""

    temperature: float
    top_k: int | None  # large-vocabulary tasks (captioning): the teacher logits kept per position; null: all

    def validate(self, key: str) -> None:
        require(self.temperature > 0, f"{key}.temperature", f"must be > 0, got {self.temperature}")
        require(self.top_k is None or self.top_k >= 1, f"{key}.top_k", f"must be >= 1 or null (all), got {self.top_k}")


@dataclass(frozen=True)
class DistillConfig:
    """``distill``: the student x method matrix and what every distillation shares.

    ``settings`` holds each method's own section (``distill.<method>``), parsed by the method.
    """

    methods: tuple[str, ...]
    seed: int | None  # student init + data order; None: the top-level seed
    init: InitConfig
    train: OptimConfig
    attention: AttentionSelectionConfig
    weights: LossWeightsConfig
    output: OutputDistillationConfig
    settings: dict[str, Any]


@dataclass(frozen=True)
class RuntimeConfig:
    """``runtime``: speed-only knobs; no stage depends on them."""

    loader_workers: int  # DataLoader worker processes for training
    teacher_cache_mib: float  # teacher outputs kept across epochs while they fit (0: off)

    def validate(self, key: str) -> None:
        require(self.loader_workers >= 0, f"{key}.loader_workers", f"must be >= 0, got {self.loader_workers}")
        require(
            self.teacher_cache_mib >= 0,
            f"{key}.teacher_cache_mib",
            f"must be >= 0 (0: no cache), got {self.teacher_cache_mib}",
        )


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``; ``data``, ``teacher``, ``students`` and ``evaluate`` are the task's config types."""

    task: str
    seed: int
    data: Any
    teacher: Any
    students: dict[str, Any]
    train: OptimConfig
    distill: DistillConfig
    evaluate: Any
    runtime: RuntimeConfig
    export: ExportConfig
    benchmark: BenchmarkConfig
    serving: ServingConfig
    deploy: DeployConfig

    def task_plugin(self) -> Task:
        return get_task(self.task)

    def model_names(self) -> list[str]:
        """Every model the pipeline builds: ``teacher`` and ``<student>-<method>``."""
        return ["teacher"] + [f"{s}-{m}" for s in self.students for m in self.distill.methods]

    def student(self, name: str) -> Any:
        if name not in self.students:
            raise ConfigError("students", f"no student {name!r}; defined: {', '.join(self.students)}")
        return self.students[name]

    @property
    def distill_seed(self) -> int:
        return self.seed if self.distill.seed is None else self.distill.seed


def _mapping(raw: Any, key: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a mapping, got {raw!r}")
    return raw


def _check_keys(raw: dict, expected: tuple[str, ...], key: str, optional: tuple[str, ...] = ()) -> None:
    for name in raw:
        if name not in expected and name not in optional:
            listed = ", ".join(expected) + (f"; or a method section: {', '.join(optional)}" if optional else "")
            raise ConfigError(child(key, str(name)), f"unknown key (expected one of: {listed})")
    for name in expected:
        if name not in raw:
            raise ConfigError(child(key, name), "missing key (see the configuration reference)")


def _parse_distill(raw: Any) -> DistillConfig:
    raw = _mapping(raw, "distill")
    fixed = ("methods", "seed", "init", "train", "attention", "weights", "output")
    _check_keys(raw, fixed, "distill", optional=tuple(METHODS.names()))
    methods = raw["methods"]
    if not isinstance(methods, list) or not methods:
        raise ConfigError("distill.methods", f"list at least one of {', '.join(METHODS.names())}, got {methods!r}")
    for index, name in enumerate(methods):
        key = child("distill.methods", index)
        require(isinstance(name, str), key, f"expected a method name, got {name!r}")
        METHODS.get(name, key)
        require(methods.index(name) == index, key, f"{name!r} is listed twice")
        require(
            name in raw,
            f"distill.{name}",
            f"missing section for the listed method (write `{name}: {{}}` if it has no settings)",
        )
    attention_weights = raw["weights"].get("attention") if isinstance(raw["weights"], dict) else None
    if isinstance(attention_weights, dict):  # one weight per method: for every listed attention method
        for name in attention_weights:
            METHODS.get(name, child("distill.weights.attention", name))
        for name in methods:
            require(
                name in attention_weights or not METHODS.get(name, "distill.methods").needs.layers,
                "distill.weights.attention",
                f"no weight for the listed method {name!r} (give every attention method one, or one number for all)",
            )
    seed = raw["seed"]
    require(
        seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0),
        "distill.seed",
        f"expected null or an integer >= 0, got {seed!r}",
    )
    settings = {
        name: from_dict(METHODS.get(name, f"distill.{name}").settings, section, f"distill.{name}")
        for name, section in raw.items()
        if name not in fixed
    }
    return DistillConfig(
        methods=tuple(methods),
        seed=seed,
        init=from_dict(InitConfig, raw["init"], "distill.init"),
        train=from_dict(OptimConfig, raw["train"], "distill.train"),
        attention=from_dict(AttentionSelectionConfig, raw["attention"], "distill.attention"),
        weights=from_dict(LossWeightsConfig, raw["weights"], "distill.weights"),
        output=from_dict(OutputDistillationConfig, raw["output"], "distill.output"),
        settings=settings,
    )


def parse_params(raw: Any, *, models: bool = True) -> Params:
    """Build and check :class:`Params` from the parsed YAML; ``models=False`` runs the structural
    tier alone (no model library is imported), True both tiers."""
    raw = _mapping(raw, "")
    _check_keys(raw, SECTIONS, "")
    require(
        isinstance(raw["task"], str), "task", f"expected a task name ({', '.join(TASKS.names())}), got {raw['task']!r}"
    )
    task = get_task(raw["task"])
    seed = raw["seed"]
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
        "seed",
        f"expected an integer >= 0, got {seed!r}",
    )
    students_raw = _mapping(raw["students"], "students")
    require(len(students_raw) > 0, "students", "define at least one student, e.g. students.h4")
    students = {}
    for name, config in students_raw.items():
        require(
            isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_]+", name) is not None,
            f"students.{name}",
            "student names may use letters, digits and '_' only",
        )
        students[name] = from_dict(task.model_config, config, f"students.{name}")
    params = Params(
        task=raw["task"],
        seed=seed,
        data=from_dict(task.data_config, raw["data"], "data"),
        teacher=from_dict(task.model_config, raw["teacher"], "teacher"),
        students=students,
        train=from_dict(OptimConfig, raw["train"], "train"),
        distill=_parse_distill(raw["distill"]),
        evaluate=from_dict(task.evaluate_config, raw["evaluate"], "evaluate"),
        runtime=from_dict(RuntimeConfig, raw["runtime"], "runtime"),
        export=from_dict(ExportConfig, raw["export"], "export"),
        benchmark=from_dict(BenchmarkConfig, raw["benchmark"], "benchmark"),
        serving=from_dict(ServingConfig, raw["serving"], "serving"),
        deploy=from_dict(DeployConfig, raw["deploy"], "deploy"),
    )
    check_structure(params, task)
    if models:
        check_models(params, task)
    return params


def distilled_groups(task: Task, teacher: Any, student: Any, student_key: str, groups: tuple[str, ...]) -> dict:
    """``{group: (teacher shape, student shape)}`` of the distilled groups. A group the student does not
    have (a text-only translation student's image groups) is left out for it; ConfigError where the
    teacher lacks one, or where the student has none of them."""
    teacher_shapes: dict[str, GroupShape] = task.group_shapes(teacher, "teacher")
    student_shapes: dict[str, GroupShape] = task.group_shapes(student, student_key)
    for index, group in enumerate(groups):
        require(
            group in teacher_shapes,
            child("distill.attention.modules", index),
            f"the teacher has no {group} attention (its groups: {', '.join(teacher_shapes)})",
        )
    kept = {group: (teacher_shapes[group], student_shapes[group]) for group in groups if group in student_shapes}
    require(
        bool(kept),
        "distill.attention.modules",
        f"{student_key} has none of the groups listed ({', '.join(groups)}); its groups: {', '.join(student_shapes)}",
    )
    return kept


def check_structure(params: Params, task: Task) -> None:
    """The constraints between sections that need no model library (each section has checked its own values)."""
    for index, group in enumerate(params.distill.attention.modules):
        require_choice(group, task.attention_groups, child("distill.attention.modules", index))
    task.check_sections(params)
    for index, name in enumerate(params.distill.methods):
        require(
            task.generative or not METHODS.get(name, "distill.methods").needs.sequences,
            child("distill.methods", index),
            f"{name!r} learns from the teacher's generated outputs; task {params.task!r} is not generative",
        )
    task.check_files(params.teacher, "teacher")
    for name, student in params.students.items():
        key = f"students.{name}"
        task.check_files(student, key)
        task.check_student(params.teacher, student, key)
    known = params.model_names()
    for index, model in enumerate(params.export.models):
        require_choice(model, known, child("export.models", index))
    if params.deploy.model not in (None, AUTO):
        require_choice(params.deploy.model, params.export.models, "deploy.model")


def check_models(params: Params, task: Task | None = None) -> None:
    """The checks that need the model libraries or the models' shapes (run after :func:`check_structure`)."""
    task = task or params.task_plugin()
    selection = params.distill.attention
    layer_methods = [m for m in params.distill.methods if METHODS.get(m, "distill.methods").needs.layers]
    task.check_model(params.teacher, "teacher")
    for name, student in params.students.items():
        key = f"students.{name}"
        task.check_model(student, key)
        groups = distilled_groups(task, params.teacher, student, key, selection.modules)
        for group, (teacher_shape, student_shape) in groups.items():
            try:
                map_layers(teacher_shape.depth, student_shape.depth, selection.layer_mapping)
            except ValueError as error:
                raise ConfigError(
                    "distill.attention.layer_mapping",
                    f"{group} ({teacher_shape.key}.depth {teacher_shape.depth}, {student_shape.key}.depth "
                    f"{student_shape.depth}): {error}",
                ) from None
        for method in layer_methods:
            METHODS.get(method, "distill.methods").check(params.distill.settings[method], f"distill.{method}", groups)
        if params.distill.init.strategy == "inherit":
            _check_inheritance(params, task, student, key)


def _check_inheritance(params: Params, task: Task, student: Any, key: str) -> None:
    """Every attention group (distilled or not) is inherited: the layer mapping and the head strategy
    must fit each one."""
    teacher_shapes = task.group_shapes(params.teacher, "teacher")
    student_shapes = task.group_shapes(student, key)
    for group, teacher_shape in teacher_shapes.items():
        require(
            group in student_shapes,
            "distill.init.strategy",
            f"inherit builds every attention group from the teacher's, and {key} has no {group} (a text-only "
            "student): use random",
        )
        student_shape = student_shapes[group]
        try:
            map_layers(teacher_shape.depth, student_shape.depth, params.distill.attention.layer_mapping)
        except ValueError as error:
            raise ConfigError(
                "distill.attention.layer_mapping",
                f"inheriting {group} ({teacher_shape.key}.depth {teacher_shape.depth}, {student_shape.key}.depth "
                f"{student_shape.depth}): {error}",
            ) from None
    check_init(params.distill.init, teacher_shapes, student_shapes, "distill.init")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``raw`` params with ``KEY=VALUE`` overrides applied as ``dvc exp run -S`` applies them: dotted
    keys, values read as YAML (``distill.methods=[none,amad]``)."""
    for override in overrides:
        key, equals, value = override.partition("=")
        if not equals or not key:
            raise ConfigError(key, f"an override is KEY=VALUE, got {override!r}")
        *sections, leaf = key.split(".")
        node = raw
        for depth, section in enumerate(sections):
            node = node.get(section) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(".".join(sections[: depth + 1]), f"is not a section, so {override!r} cannot set it")
        node[leaf] = yaml.safe_load(value)
    return raw


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None, *, models: bool = True) -> Params:
    """Read and check the whole params file, with ``overrides`` (``KEY=VALUE``, see
    :func:`apply_overrides`) applied first; ConfigError names the bad key (or the YAML line).
    ``models=False``: the structural tier alone (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("", f"{path} not found (run from the repository root)", source=str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "parse error"
        raise ConfigError("", f"{where}: {getattr(error, 'problem', error)}", source=str(path)) from None
    try:
        return parse_params(apply_overrides(raw, overrides or []), models=models)
    except ConfigError as error:
        if path.name == "params.yaml":
            raise
        raise ConfigError(error.key, error.reason, source=str(path)) from None
