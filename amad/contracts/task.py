"""What a task plug-in provides: everything task-specific, behind one class; and the task registry.

The task-neutral parts of amad (attention capture, losses, distillation methods, layer mapping,
the training loop, checkpoints, DDP, export, benchmark, the stages) reach the data and the models
only through this interface. A task is chosen by ``task:`` in ``params.yaml`` and recorded in every
saved model's ``config.json``.

Vocabulary:

* **state**: what the prepared data fixes about a model (VQA: the answer vocabulary); JSON-able,
  read from the prepared folder and saved with every model.
* **batch**: a dict of tensors collated from the task's dataset; it always holds ``"index"`` (the
  sample's position in its split), which the teacher cache looks outputs up by.
* **inputs**: the tuple the model's ``forward`` takes.
* **outputs**: what ``forward`` returns: named tensors ``{name: tensor}``, batch first.
* **graphs**: the parts of a model that are exported and served, by name, each
  ``(*inputs) -> {output name: tensor}`` (:mod:`amad.contracts.graph`): VQA has one (``model``,
  the whole model), retrieval two (``image`` and ``text`` encoders); the export writes
  ``<graph>.onnx`` per graph.
* **predictor**: the task's procedure from a batch to predictions over the graphs
  (:class:`~amad.contracts.graph.Predictor`). Evaluation and the export's parity gate run it, so a
  torch model and its ONNX files are evaluated by the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from amad.config.typed import require
from amad.contracts.graph import GenerationCall, Graph, GraphSpec, Predictor
from amad.contracts.registry import Registry


@dataclass(frozen=True)
class GroupShape:
    """One attention group's stack in one model, known from the model config alone.

    Attributes:
        depth: attention modules in the stack.
        heads: heads per module.
        width: heads x head dimension (the width of q, k and v).
        queries: query tokens per sample.
        keys: key tokens per sample.
        key: the config key that sets this stack (for error messages), e.g. ``teacher.vision``.
    """

    depth: int
    heads: int
    width: int
    queries: int
    keys: int
    key: str


class Task:
    """Base class of the task plug-ins (register subclasses in :data:`TASKS`).

    Class attributes:
        name: the registered name (``params.yaml: task``).
        data_config: dataclass of the ``data`` section.
        model_config: dataclass of ``teacher`` and each ``students.<name>``.
        evaluate_config: dataclass of the ``evaluate`` section (the evaluation's settings).
        attention_groups: names of the attention groups ``distill.attention.modules`` may select.
        primary_metric: the key of the one number that ranks models in ``metrics/eval.json``.
        graph_names: the names :meth:`graphs` returns, in order.
        serving_loop: ``module:Class`` of what a server runs as one model for a generative task (the
            decode loop server-side: captioning's :class:`~amad.tasks.captioning.serving.Captioner`,
            built from the export folder), None: each graph is served as its own model.
        served_graph: the graph name clients see for that one model (its ``amad.graph``).
        generative: the model writes sequences (captions, translations): it implements
            :meth:`sequence_targets` and :meth:`with_sequence_targets` (sequence-level distillation).
    """

    name: ClassVar[str]
    data_config: ClassVar[type]
    model_config: ClassVar[type]
    evaluate_config: ClassVar[type]
    attention_groups: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    graph_names: ClassVar[tuple[str, ...]] = ("model",)
    serving_loop: ClassVar[str | None] = None
    served_graph: ClassVar[str | None] = None
    generative: ClassVar[bool] = False

    # -- configuration (no model is built) -------------------------------------------------
    def group_shapes(self, config: Any, key: str) -> dict[str, GroupShape]:
        """Shape of every attention group of a model built from ``config`` (at ``key``)."""
        raise NotImplementedError

    def check_files(self, config: Any, key: str) -> None:
        """Raise ConfigError (naming a key below ``key``) where a file the model config names does not
        exist. Part of the structural check: imports no model library. Not run when a saved model
        is loaded."""

    def check_model(self, config: Any, key: str) -> None:
        """Raise ConfigError (naming a key below ``key``) for what a model config needs that only the
        model libraries can tell (a timm name, a checkpoint's shapes, a tokenizer folder's files).
        Runs after every structural check, before any work; not when a saved model is loaded."""

    def check_sections(self, params: Any) -> None:
        """Raise ConfigError (naming a key) where the task's sections of ``params`` (the whole
        ``params.yaml``) disagree with each other (captioning: the models' context and the data's).
        Structural: imports no model library."""

    def check_student(self, teacher: Any, student: Any, key: str) -> None:
        """Raise ConfigError (naming ``key``) where ``student`` cannot learn from ``teacher``."""

    def check_batch_sizes(self, split_sizes: dict[str, int], batch_sizes: dict[str, int]) -> None:
        """Every training batch size (by key) must fit the training split."""
        for key, size in batch_sizes.items():
            require(
                size <= split_sizes["train"],
                key,
                f"{size} is larger than the training split ({split_sizes['train']} samples); "
                "lower it or add training data",
            )

    # -- data -------------------------------------------------------------------------------
    def prepare(
        self, config: Any, seed: int, out: Path, check_splits: Callable | None = None, log: Callable = print
    ) -> dict:
        """Write the prepared data folder ``out`` (atomically); returns its summary.

        ``check_splits({split: samples})`` runs before anything is written and may refuse (raise);
        ``log`` receives a short human report.
        """
        raise NotImplementedError

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        """Samples per split of a prepared folder."""
        raise NotImplementedError

    def read_state(self, data_dir: Path) -> dict:
        """The state the prepared folder fixes for every model trained on it."""
        raise NotImplementedError

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        """A torch dataset of one split; items are dicts that collate into batches."""
        raise NotImplementedError

    # -- models -----------------------------------------------------------------------------
    def preprocess(self, config: Any, state: dict | None = None) -> Any:
        """The input preprocessing of a model built from ``config`` on data whose :meth:`read_state` is
        ``state`` (saved with it; captioning's tokenizer is learned from the data: it needs the state)."""
        raise NotImplementedError

    def preprocess_from_dict(self, data: dict) -> Any:
        """The preprocessing saved with a model (its ``to_dict()``), read back (default: amad's image +
        text :class:`~amad.data.preprocess.Preprocess`)."""
        from amad.data.preprocess import Preprocess

        return Preprocess.from_dict(data)

    def preprocess_from_metadata(self, metadata: dict[str, str]) -> Any:
        """An export's preprocessing from its ONNX metadata: ``amad.data.preprocess`` read by
        :meth:`preprocess_from_dict`, with the tokenizer saved in ``amad.tokenizer`` where there is one
        (:meth:`Preprocess.export_metadata <amad.data.preprocess.Preprocess.export_metadata>` writes both)."""
        preprocess = self.preprocess_from_dict(json.loads(metadata["amad.data.preprocess"]))
        if "amad.tokenizer" in metadata:  # exports from before it was saved use the training tokenizer
            preprocess = preprocess.with_saved_tokenizer(metadata["amad.tokenizer"])
        return preprocess

    def build_model(self, config: Any, state: dict) -> Any:
        """A freshly initialised model (the caller seeds the RNG); it keeps ``config`` as its ``config``
        attribute (saved with it) and returns named outputs from ``forward``."""
        raise NotImplementedError

    def without_pretrained_weights(self, config: Any) -> Any:
        """``config`` with its references to pretrained weights dropped: what a saved model is rebuilt
        from before its own weights are loaded (nothing is read twice)."""
        return config

    def module_groups(self, model: Any) -> dict[str, list[str]]:
        """Attention module paths per group, each list ordered by depth."""
        raise NotImplementedError

    def model_inputs(self, batch: dict) -> tuple:
        """The model's ``forward`` arguments from a batch."""
        raise NotImplementedError

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        """``(query_mask, key_mask)`` ``[B, q]`` / ``[B, k]`` bool of a group's maps (None: all real)."""
        raise NotImplementedError

    def token_labels(self, group: str, batch: dict, preprocess: Any) -> tuple[list[str] | None, list[str] | None]:
        """``(query labels, key labels)`` of the first sample's maps in ``group``, the text piece of
        each token (for the report's axes), before :meth:`attention_masks` applies; None: not text."""
        return None, None

    # -- objective --------------------------------------------------------------------------
    def task_loss(self, outputs: dict[str, Any], batch: dict, config: Any) -> Any:
        """Ground-truth loss of the model's ``outputs`` on ``batch``; ``config`` is the model's config
        (captioning reads its caption and contrastive weights there)."""
        raise NotImplementedError

    def teacher_targets(self, outputs: dict[str, Any], batch: dict, top_k: int | None) -> dict[str, Any]:
        """What output distillation reads of the teacher's ``outputs`` on ``batch``, per sample (batch
        first): what the teacher cache keeps, and what a step without the cache hands on, so the
        speed-only cache changes no result (default: every output; a large-vocabulary task keeps
        its ``top_k`` logits per position, ``distill.output.top_k``, None: all)."""
        return outputs

    def output_distillation(
        self, student_outputs: dict[str, Any], teacher_targets: dict[str, Any], batch: dict, temperature: float
    ) -> Any:
        """The output-distillation term from the student's outputs and :meth:`teacher_targets` on
        ``batch`` (its padding masks); ``distill.output.temperature`` is the task's temperature."""
        raise NotImplementedError

    # -- evaluation and export ----------------------------------------------------------------
    def graphs(self, model: Any) -> dict[str, Graph]:
        """The model's exported parts by graph name (default: the whole model, named ``model``)."""
        return {"model": model}

    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        """The task's procedure from a batch to predictions over ``graphs`` (torch modules or exported
        files, as :meth:`graphs` names them)."""
        raise NotImplementedError

    def evaluate(
        self,
        predictor: Predictor,
        dataset: Any,
        *,
        settings: Any = None,
        device: Any = "cpu",
        batch_size: int = 256,
    ) -> dict:
        """``{primary_metric: value, "breakdown": {...}}`` of ``predictor``'s predictions over
        ``dataset``; ``settings`` (the ``evaluate`` section) adds what it asks for to the breakdown,
        None: the primary metric's evaluation only."""
        raise NotImplementedError

    def describe(self, dataset: Any, index: int) -> str:
        """One line saying what sample ``index`` of ``dataset`` is (for reports)."""
        return f"sample {index}"

    def example_inputs(self, preprocess: Any, batch_size: int) -> tuple:
        """Inputs of a fixed dummy batch (for FLOP counts and tracing)."""
        raise NotImplementedError

    def export_specs(
        self, preprocess: Any, state: dict, graphs: dict[str, Graph] | None = None
    ) -> dict[str, GraphSpec]:
        """How each of :meth:`graphs` becomes an ONNX graph, by graph name. ``graphs``: the model's torch
        graphs, for a graph whose inputs are another's outputs (captioning's decoder reads the image
        graph's keys and values); None where the caller has no model (then such specs may refuse)."""
        raise NotImplementedError

    def generation_calls(self) -> dict[str, GenerationCall]:
        """Whole generations the benchmark times besides each graph's single call, by row name
        (``<model>.<name>``); default none (one call is the whole prediction)."""
        return {}

    def decode_cache_bytes(self, config: Any, state: dict) -> dict[str, int]:
        """Bytes per output row of a decoder's key/value caches from the model config and the data's
        state (``self_attention_per_token``, ``cross_attention``), which the benchmark checks against the
        cache tensors; default none (no decode loop)."""
        return {}

    def sequence_targets(self, predictor: Predictor, dataset: Any, generation: Any, device: Any) -> list[dict]:
        """A generative task's outputs of ``predictor`` (the teacher's) for every input of ``dataset``
        (the training split) decoded with ``generation``: JSON-able rows, one per input, that
        :meth:`with_sequence_targets` reads back (stage ``teacher_sequences``)."""
        raise NotImplementedError(f"task {self.name!r} is not generative: it has no sequence-level targets")

    def with_sequence_targets(self, dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
        """``dataset`` (the training split) with the teacher's outputs ``rows`` as its targets:
        ``replace`` puts a row's output in place of each of its input's references, ``add`` adds it
        as one more; DataError naming ``source`` (the rows' file) when the rows do not fit the split."""
        raise NotImplementedError(f"task {self.name!r} is not generative: it has no sequence-level targets")

    def parity_inputs(self, dataset: Any, count: int) -> dict[str, Any]:
        """The validation samples each graph's parity is measured on (default: the first ``count``)."""
        from torch.utils.data import Subset

        return {graph: Subset(dataset, range(min(count, len(dataset)))) for graph in self.graph_names}

    # -- report -------------------------------------------------------------------------------
    def report_pages(
        self,
        teacher_dir: Path,
        student_dirs: dict[str, Path],
        attention_models: list[str],
        data_dir: Path,
        out: Path,
    ) -> str:
        """The task's own report pages: pictures written under ``out`` (``reports/``) and markdown for
        ``summary.md``. ``student_dirs``: every student's model folder by name; ``attention_models``:
        the students whose attention the report draws. Default: none."""
        return ""

    # -- prediction and serving --------------------------------------------------------------
    def state_from_metadata(self, metadata: dict[str, str]) -> dict:
        """The state prediction needs, from an exported graph's metadata (``export_specs``' metadata;
        a Triton model's ``amad.*`` parameters are the same); default: none."""
        return {}

    def predict_arguments(self, parser: Any) -> None:
        """Add the task's ``amad predict`` flags to ``parser`` (an ``argparse.ArgumentParser``)."""

    def predict(self, source: Any, args: Any) -> None:
        """``amad predict``: read the task's flags ``args``, predict with ``source`` (a
        :class:`~amad.contracts.graph.ModelSource`: local or served graphs alike) through the task's
        predictor, print or write the predictions; AmadError for bad flags or inputs."""
        raise NotImplementedError

    def agreement(self, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
        """Share of identical predictions of two predictors over the parity samples (both
        ``{parity set: {prediction name: [N, ...]}}``, as :meth:`parity_inputs` names the sets)."""
        raise NotImplementedError


TASKS: Registry[Task] = Registry(
    "task",
    {
        "captioning": "amad.tasks.captioning.task",
        "retrieval": "amad.tasks.retrieval.task",
        "translation": "amad.tasks.translation.task",
        "vqa": "amad.tasks.vqa.task",
    },
)
"""``params.yaml: task`` (and a saved model's ``task``) -> its class. A new task is a :class:`Task`
subclass decorated with ``@TASKS.register("name")`` in a module that the run imports."""


def get_task(name: str, key: str = "task") -> Task:
    """An instance of the task registered as ``name`` (ConfigError naming ``key`` if there is none)."""
    return TASKS.get(name, key)()
