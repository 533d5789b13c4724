"""Typed ``params.yaml``: dataclasses filled from YAML with errors that name the key.

Every stage loads and validates the *whole* file before doing any work, so a typo anywhere fails
fast with one line such as ``params.yaml: distill.amad.temprature: unknown key (expected one of:
variant, temperature, ...)``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amad.errors import ConfigError
from amad.layer_mapping import STRATEGIES
from amad.losses import HEAD_MISMATCH_POLICIES, VARIANTS
from amad.losses.relation import RELATIONS
from amad.objective import METHODS, AmadSettings
from amad.temperature import SCHEDULES

DATA_SOURCES = ("shapes", "jsonl", "vqav2")
ATTENTION_GROUPS = ("vision_self", "text_self", "fusion_self", "fusion_cross")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


@dataclass(frozen=True)
class VisionConfig:
    """Vision tower: a timm ViT, by name or by explicit shape."""

    timm_name: str | None = None
    timm_pretrained: bool = False
    image_size: int = 48
    patch_size: int = 12
    width: int = 128
    depth: int = 3
    heads: int = 8
    mlp_ratio: float = 4.0

    def validate(self, key: str) -> None:
        _check_heads(self.width, self.heads, key)
        _require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")
        _require(
            self.image_size % self.patch_size == 0,
            f"{key}.patch_size",
            f"{self.patch_size} does not divide image_size {self.image_size}",
        )
        _require(not self.timm_pretrained or self.timm_name, f"{key}.timm_pretrained", "needs vision.timm_name")


@dataclass(frozen=True)
class TextConfig:
    """Text tower: an open_clip ``TextTransformer`` (causal) with open_clip's tokenizer."""

    context_length: int = 16
    width: int = 128
    depth: int = 2
    heads: int = 8
    mlp_ratio: float = 4.0

    def validate(self, key: str) -> None:
        _check_heads(self.width, self.heads, key)
        _require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")
        _require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")


@dataclass(frozen=True)
class FusionConfig:
    """BLIP-style fusion: text self-attention + cross-attention to image tokens (text width)."""

    depth: int = 2
    heads: int = 8
    mlp_ratio: float = 4.0

    def validate(self, key: str, width: int) -> None:
        _check_heads(width, self.heads, key, width_key="text.width")
        _require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")


@dataclass(frozen=True)
class ModelConfig:
    """A task model: vision + text + fusion towers and the answer head."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    pretrained: str | None = None

    def validate(self, key: str) -> None:
        self.vision.validate(f"{key}.vision")
        self.text.validate(f"{key}.text")
        self.fusion.validate(f"{key}.fusion", self.text.width)
        if self.pretrained is not None:
            _require(Path(self.pretrained).exists(), f"{key}.pretrained", f"no such file or folder: {self.pretrained}")


def _check_heads(width: int, heads: int, key: str, width_key: str | None = None) -> None:
    _require(heads >= 1, f"{key}.heads", f"must be >= 1, got {heads}")
    _require(width >= 1, f"{key}.width", f"must be >= 1, got {width}")
    _require(
        width % heads == 0,
        f"{key}.heads",
        f"{heads} heads do not divide the width {width} ({width_key or key + '.width'})",
    )


@dataclass(frozen=True)
class ShapesConfig:
    """The built-in synthetic shapes VQA generator."""

    train: int = 6000
    val: int = 1000
    test: int = 1000
    image_size: int = 48
    grid: int = 4
    min_objects: int = 2
    max_objects: int = 6

    def validate(self, key: str) -> None:
        for split in ("train", "val", "test"):
            _require(getattr(self, split) >= 1, f"{key}.{split}", "must be >= 1")
        _require(2 <= self.grid <= 8, f"{key}.grid", f"must be in 2..8, got {self.grid}")
        _require(self.image_size % self.grid == 0, f"{key}.grid", f"{self.grid} does not divide image_size")
        _require(self.image_size // self.grid >= 6, f"{key}.image_size", "cells must be at least 6 pixels")
        _require(
            2 <= self.min_objects <= self.max_objects, f"{key}.min_objects", "need 2 <= min_objects <= max_objects"
        )
        _require(self.max_objects <= self.grid**2, f"{key}.max_objects", f"at most grid^2 = {self.grid**2}")


@dataclass(frozen=True)
class DataConfig:
    source: str = "shapes"
    path: str | None = None
    max_answers: int = 1000
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    def validate(self, key: str) -> None:
        _require(self.source in DATA_SOURCES, f"{key}.source", f"must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.source != "shapes":
            _require(self.path is not None, f"{key}.path", f"data.source={self.source!r} needs data.path")
            _require(Path(self.path).is_dir(), f"{key}.path", f"no such folder: {self.path}")
        _require(self.max_answers >= 2, f"{key}.max_answers", "must be >= 2")
        self.shapes.validate(f"{key}.shapes")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation: AdamW with linear warm-up then cosine decay."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    num_workers: int = 0

    def validate(self, key: str) -> None:
        _require(self.epochs >= 1, f"{key}.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        _require(0 <= self.warmup_fraction < 1, f"{key}.warmup_fraction", "must be in [0, 1)")
        _require(self.grad_clip >= 0, f"{key}.grad_clip", "must be >= 0 (0 disables clipping)")
        _require(self.num_workers >= 0, f"{key}.num_workers", "must be >= 0")


@dataclass(frozen=True)
class AttentionSelectionConfig:
    """Which attention modules are distilled, and which teacher layer teaches which student layer."""

    modules: tuple[str, ...] = ATTENTION_GROUPS
    layer_mapping: str | list[list[int]] = "uniform"

    def validate(self, key: str) -> None:
        _require(len(self.modules) > 0, f"{key}.modules", f"must list some of {ATTENTION_GROUPS}")
        for group in self.modules:
            _require(group in ATTENTION_GROUPS, f"{key}.modules", f"unknown group {group!r}; use {ATTENTION_GROUPS}")
        if isinstance(self.layer_mapping, str):
            _require(
                self.layer_mapping in STRATEGIES,
                f"{key}.layer_mapping",
                f"must be one of {STRATEGIES} or a list of [teacher, student] pairs, got {self.layer_mapping!r}",
            )


@dataclass(frozen=True)
class LossWeightsConfig:
    task: float = 1.0
    logit: float = 1.0
    attention: float = 1.0


@dataclass(frozen=True)
class LogitConfig:
    temperature: float = 2.0

    def validate(self, key: str) -> None:
        _require(self.temperature > 0, f"{key}.temperature", "must be > 0")


@dataclass(frozen=True)
class OneToOneConfig:
    head_mismatch: str = "truncate"

    def validate(self, key: str) -> None:
        _require(
            self.head_mismatch in HEAD_MISMATCH_POLICIES,
            f"{key}.head_mismatch",
            f"must be one of {HEAD_MISMATCH_POLICIES}, got {self.head_mismatch!r}",
        )


@dataclass(frozen=True)
class MiniLMConfig:
    relation_heads: int = 4
    relations: tuple[str, ...] = RELATIONS

    def validate(self, key: str) -> None:
        _require(self.relation_heads >= 1, f"{key}.relation_heads", "must be >= 1")
        for relation in self.relations:
            _require(relation in RELATIONS, f"{key}.relations", f"unknown relation {relation!r}; use {RELATIONS}")


@dataclass(frozen=True)
class DistillConfig:
    methods: tuple[str, ...] = METHODS
    seed: int | None = None  # student init and data order; None: the top-level seed
    train: OptimConfig = field(default_factory=OptimConfig)
    attention: AttentionSelectionConfig = field(default_factory=AttentionSelectionConfig)
    weights: LossWeightsConfig = field(default_factory=LossWeightsConfig)
    logit: LogitConfig = field(default_factory=LogitConfig)
    one2one: OneToOneConfig = field(default_factory=OneToOneConfig)
    minilm: MiniLMConfig = field(default_factory=MiniLMConfig)
    amad: AmadSettings = field(default_factory=AmadSettings)
    teacher_cache_mib: float = 2048  # teacher outputs kept across epochs while they fit; 0: off

    def validate(self, key: str) -> None:
        _require(len(self.methods) > 0, f"{key}.methods", f"must list some of {METHODS}")
        _require(self.teacher_cache_mib >= 0, f"{key}.teacher_cache_mib", "must be >= 0 (0: no cache)")
        for method in self.methods:
            _require(method in METHODS, f"{key}.methods", f"unknown method {method!r}; use {METHODS}")
        self.train.validate(f"{key}.train")
        self.attention.validate(f"{key}.attention")
        self.logit.validate(f"{key}.logit")
        self.one2one.validate(f"{key}.one2one")
        self.minilm.validate(f"{key}.minilm")
        _validate_amad(self.amad, f"{key}.amad")


def _validate_amad(amad: AmadSettings, key: str) -> None:
    _require(amad.variant in VARIANTS, f"{key}.variant", f"must be one of {VARIANTS}, got {amad.variant!r}")
    _require(amad.temperature > 0, f"{key}.temperature", f"must be > 0, got {amad.temperature}")
    _require(
        amad.temperature_schedule in SCHEDULES,
        f"{key}.temperature_schedule",
        f"must be one of {SCHEDULES}, got {amad.temperature_schedule!r}",
    )
    if amad.temperature_schedule in ("linear", "cosine"):
        _require(
            amad.final_temperature is not None and amad.final_temperature > 0,
            f"{key}.final_temperature",
            f"schedule {amad.temperature_schedule!r} needs a final_temperature > 0",
        )


@dataclass(frozen=True)
class TensorRTConfig:
    """TensorRT engine build (only where ``tensorrt`` imports and CUDA is present)."""

    enabled: bool = True
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 1024

    def validate(self, key: str) -> None:
        _require(
            1 <= self.min_batch <= self.opt_batch <= self.max_batch,
            f"{key}.min_batch",
            "need 1 <= min_batch <= opt_batch <= max_batch",
        )
        _require(self.workspace_mib >= 64, f"{key}.workspace_mib", "must be >= 64")


@dataclass(frozen=True)
class ExportConfig:
    """ONNX / int8 / fp16 / TensorRT export of the listed models."""

    models: tuple[str, ...] = ("teacher",)
    opset: int = 18
    parity_samples: int = 256
    parity_atol: float = 1e-4
    min_agreement: float = 0.995
    int8: bool = True
    triton_model: str | None = None
    tensorrt: TensorRTConfig = field(default_factory=TensorRTConfig)

    def validate(self, key: str, known: list[str]) -> None:
        _require(len(self.models) > 0, f"{key}.models", "list at least one model, e.g. [teacher, h2-amad]")
        for name in self.models:
            _require(name in known, f"{key}.models", f"unknown model {name!r}; the pipeline builds {known}")
        _require(self.opset >= 18, f"{key}.opset", f"must be >= 18, got {self.opset}")
        _require(self.parity_samples >= 1, f"{key}.parity_samples", "must be >= 1")
        _require(self.parity_atol > 0, f"{key}.parity_atol", "must be > 0")
        _require(0 < self.min_agreement <= 1, f"{key}.min_agreement", "must be in (0, 1]")
        if self.triton_model is not None:
            _require(self.triton_model in self.models, f"{key}.triton_model", "must be one of export.models")
        self.tensorrt.validate(f"{key}.tensorrt")


BACKENDS = ("torch", "onnxruntime", "onnxruntime_int8", "torch_cuda_fp16", "tensorrt")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Latency benchmark of every exported model x backend x batch size."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    backends: tuple[str, ...] = BACKENDS
    warmup: int = 5
    repeats: int = 30
    burst: int = 4
    threads: int = 0

    def validate(self, key: str) -> None:
        _require(len(self.batch_sizes) > 0 and min(self.batch_sizes) >= 1, f"{key}.batch_sizes", "positive sizes")
        for backend in self.backends:
            _require(backend in BACKENDS, f"{key}.backends", f"unknown backend {backend!r}; use {BACKENDS}")
        _require(self.warmup >= 0, f"{key}.warmup", "must be >= 0")
        _require(self.repeats >= 3, f"{key}.repeats", "must be >= 3 (percentiles)")
        _require(self.burst >= 1, f"{key}.burst", "must be >= 1 (1: one timed call per pair and round)")
        _require(self.threads >= 0, f"{key}.threads", "must be >= 0 (0: all cores)")


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: ModelConfig = field(default_factory=ModelConfig)
    students: dict[str, ModelConfig] = field(default_factory=dict)
    train: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)

    def model_names(self) -> list[str]:
        """Every model the pipeline builds: ``teacher`` and ``<student>-<method>``."""
        return ["teacher"] + [f"{s}-{m}" for s in self.students for m in self.distill.methods]

    def validate(self) -> None:
        self.data.validate("data")
        self.teacher.validate("teacher")
        _require(len(self.students) > 0, "students", "define at least one student, e.g. students.h4")
        for name, student in self.students.items():
            _require(
                re.fullmatch(r"[A-Za-z0-9_]+", name) is not None,
                f"students.{name}",
                "student names may use letters, digits and '_' only",
            )
            student.validate(f"students.{name}")
        self.train.validate("train")
        self.distill.validate("distill")
        self.export.validate("export", self.model_names())
        self.benchmark.validate("benchmark")

    def student(self, name: str) -> ModelConfig:
        if name not in self.students:
            raise ConfigError("students", f"no student {name!r}; defined: {sorted(self.students)}")
        return self.students[name]


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check ``value`` against a type annotation and convert it (YAML -> dataclass instances)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key, source=source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except ConfigError as error:
                errors.append(error)
        raise (
            errors[-1]
            if len(errors) == 1
            else ConfigError(
                key, f"expected {' or '.join(_type_name(o) for o in options)}, got {value!r}", source=source
            )
        )
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {value!r}", source=source)
        item_type = typing.get_args(annotation)[0]
        items = [_convert(item, item_type, f"{key}[{index}]", source) for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}", source=source)
        value_type = typing.get_args(annotation)[1]
        return {str(name): _convert(item, value_type, f"{key}.{name}", source) for name, item in value.items()}
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}", source=source)
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}", source=source)
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ConfigError(key, f"expected {annotation.__name__}, got {value!r}", source=source)
        return value
    raise TypeError(f"unsupported annotation {annotation!r} at {key}")


def from_dict(cls: type, data: Any, key: str = "", *, source: str = "params.yaml") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping, got {data!r}", source=source)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [name for name in data if name not in names]
    if unknown:
        prefix = f"{key}." if key else ""
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (expected one of: {', '.join(names)})", source=source)
    values = {
        name: _convert(value, hints[name], f"{key}.{name}" if key else name, source) for name, value in data.items()
    }
    return cls(**values)


def to_dict(config: Any) -> Any:
    """Dataclass -> plain YAML/JSON-able structures (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {name: to_dict(value) for name, value in config.items()}
    if isinstance(config, list | tuple):
        return [to_dict(value) for value in config]
    return config


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raises ConfigError naming the bad key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("", f"{path} not found (run from the repository root)", source=str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "parse error"
        raise ConfigError("", f"{where}: {getattr(error, 'problem', error)}", source=str(path)) from None
    params = from_dict(Params, raw, source=path.name)
    params.validate()
    return params
