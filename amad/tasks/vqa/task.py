"""The ``vqa`` task: answer classification over a fixed answer vocabulary.

Model: timm ViT + open_clip text transformer + BLIP-style fusion + answer head
(:class:`~amad.tasks.vqa.model.VQAModel`); inputs ``(pixels [B, 3, H, W], tokens [B, L])``,
outputs answer logits ``[B, A]``. Task loss: soft-target cross-entropy on VQA answer scores;
output distillation: Hinton KD on the logits. State: the answer vocabulary of the prepared data.

The heavy modules (torch models, datasets) are imported where they are used, so validating
``params.yaml`` (every stage does it first) does not load timm or open_clip.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.config.typed import require
from amad.contracts.graph import Graph, GraphSpec, Predictor
from amad.contracts.task import TASKS, GroupShape, Task
from amad.errors import AmadError
from amad.tasks.checks import check_hf_text_folder, check_pretrained, check_shared_preprocessing, read_summary
from amad.tasks.vqa.config import ATTENTION_GROUPS, DataConfig, EvaluateConfig, ModelConfig, VisionConfig

SUMMARY = "answers.json"  # the prepared folder's vocabulary and split summary


def vision_tokens(config: VisionConfig) -> int:
    """Image tokens of the vision tower; a timm architecture is built on the meta device to count them."""
    if config.timm_name is None:
        return (config.image_size // config.patch_size) ** 2 + 1
    import torch

    from amad.tasks.vqa.model import build_vision_tower

    with torch.device("meta"):  # shapes only: no memory, no weights loaded
        tower = build_vision_tower(dataclasses.replace(config, timm_weights=None))
    grid = tower.patch_embed.grid_size
    return grid[0] * grid[1] + tower.num_prefix_tokens


def check_timm_weights(vision: VisionConfig, key: str) -> None:
    """The configured shape is ``timm_name``'s own (the shape its checkpoints have; the head count
    may differ: same tensors). The file's existence is checked with the structure (``check_files``)."""
    import timm
    import torch

    with torch.device("meta"):  # the architecture's shape only
        defaults = timm.create_model(vision.timm_name, pretrained=False, num_classes=0, global_pool="")
    reference = {"patch_size": defaults.patch_embed.patch_size[0], "width": defaults.embed_dim}
    reference["depth"] = len(defaults.blocks)
    reference["mlp_ratio"] = defaults.blocks[0].mlp.fc1.out_features / defaults.embed_dim
    for field, theirs in reference.items():
        require(
            getattr(vision, field) == theirs,
            f"{key}.{field}",
            f"must be {vision.timm_name}'s {theirs} to load {key}.timm_weights, got {getattr(vision, field)}",
        )


@TASKS.register("vqa")
class VQATask(Task):
    data_config = DataConfig
    evaluate_config = EvaluateConfig
    model_config = ModelConfig
    attention_groups = ATTENTION_GROUPS
    primary_metric = "accuracy"

    def group_shapes(self, config: ModelConfig, key: str) -> dict[str, GroupShape]:
        vision, image_tokens = config.vision, vision_tokens(config.vision)
        text, fusion, length = config.text, config.fusion, config.text.context_length
        return {
            "vision_self": GroupShape(
                vision.depth, vision.heads, vision.width, image_tokens, image_tokens, f"{key}.vision"
            ),
            "text_self": GroupShape(text.depth, text.heads, text.width, length, length, f"{key}.text"),
            "fusion_self": GroupShape(fusion.depth, fusion.heads, text.width, length, length, f"{key}.fusion"),
            "fusion_cross": GroupShape(fusion.depth, fusion.heads, text.width, length, image_tokens, f"{key}.fusion"),
        }

    def check_files(self, config: ModelConfig, key: str) -> None:
        check_pretrained(config, key)
        if config.text.hf_model is not None:
            check_hf_text_folder(config.text, f"{key}.text")
        weights = config.vision.timm_weights
        if weights is not None:
            require(Path(weights).is_file(), f"{key}.vision.timm_weights", f"no such file: {weights}")

    def check_model(self, config: ModelConfig, key: str) -> None:
        if config.text.hf_model is not None:
            from amad.data.preprocess import check_hf_tokenizer

            check_hf_tokenizer(config.text.hf_model, f"{key}.text.hf_model")
        if config.vision.timm_weights is not None:
            check_timm_weights(config.vision, f"{key}.vision")

    def check_student(self, teacher: ModelConfig, student: ModelConfig, key: str) -> None:
        check_shared_preprocessing(teacher, student, key)

    # -- data -------------------------------------------------------------------------------
    def prepare(
        self, config: DataConfig, seed: int, out: Path, check_splits: Callable | None = None, log: Callable = print
    ) -> dict:
        from amad.tasks.vqa.prepare import prepare

        return prepare(config, seed, out, check_splits, log)

    def _summary(self, data_dir: Path) -> dict:
        return read_summary(data_dir, SUMMARY)

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        return {split: entry["questions"] for split, entry in self._summary(data_dir)["splits"].items()}

    def read_state(self, data_dir: Path) -> dict:
        from amad.tasks.vqa.words import training_words

        return {"answers": self._summary(data_dir)["answers"], "words": training_words(Path(data_dir) / "train.jsonl")}

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        from amad.tasks.vqa.dataset import VQADataset

        return VQADataset(data_dir, split, preprocess, state["answers"])

    # -- models -----------------------------------------------------------------------------
    def preprocess(self, config: ModelConfig, state: dict | None = None) -> Any:
        from amad.tasks.vqa.model import preprocess_of

        return preprocess_of(config)

    def build_model(self, config: ModelConfig, state: dict) -> Any:
        from amad.tasks.vqa.model import VQAModel

        return VQAModel(config, len(state["answers"]))

    def without_pretrained_weights(self, config: ModelConfig) -> ModelConfig:
        vision = dataclasses.replace(config.vision, timm_weights=None)
        text = dataclasses.replace(config.text, hf_pretrained=False)
        return dataclasses.replace(config, vision=vision, text=text, pretrained=None)

    def module_groups(self, model: Any) -> dict[str, list[str]]:
        return model.attention_groups()

    def model_inputs(self, batch: dict) -> tuple:
        return batch["pixels"], batch["tokens"]

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        from amad.tasks.vqa.model import VQAModel

        return VQAModel.attention_masks(group, batch["tokens"])

    def token_labels(self, group: str, batch: dict, preprocess: Any) -> tuple[list[str] | None, list[str] | None]:
        if group == "vision_self":
            return None, None
        words = preprocess.token_strings(batch["tokens"][0].tolist())
        return words, (None if group == "fusion_cross" else words)  # cross-attention's keys: image tokens

    # -- objective --------------------------------------------------------------------------
    def task_loss(self, outputs: dict[str, Any], batch: dict, config: Any) -> Any:
        from amad.losses.logit import task_loss

        return task_loss(outputs["logits"], batch["targets"])

    def output_distillation(
        self, student_outputs: dict[str, Any], teacher_targets: dict[str, Any], batch: dict, temperature: float
    ) -> Any:
        from amad.losses.logit import logit_kd_loss

        return logit_kd_loss(student_outputs["logits"], teacher_targets["logits"], temperature=temperature)

    # -- evaluation and export ----------------------------------------------------------------
    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        return AnswerPredictor(graphs)

    def evaluate(
        self,
        predictor: Predictor,
        dataset: Any,
        *,
        settings: Any = None,
        device: Any = "cpu",
        batch_size: int = 256,
    ) -> dict:
        from amad.models.evaluation import collect
        from amad.tasks.vqa.evaluation import accuracy_report

        logits = collect(predictor, dataset, device=device, batch_size=batch_size)["logits"]
        return accuracy_report(logits, dataset)

    def describe(self, dataset: Any, index: int) -> str:
        record = dataset.records[index]
        return f"{record.id}: {record.question} -> {', '.join(record.answers)}"

    def example_inputs(self, preprocess: Any, batch_size: int) -> tuple:
        import torch

        pixels = torch.zeros(batch_size, 3, preprocess.image_size, preprocess.image_size)
        tokens = preprocess.tokenize(["a"] * batch_size)  # start, one word, end (the model's own tokenizer)
        return pixels, tokens

    def export_specs(self, preprocess: Any, state: dict, graphs: dict | None = None) -> dict[str, GraphSpec]:
        import torch

        pixels = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
        tokens = preprocess.tokenize(["what is this?", "is there a circle?"])
        metadata = {
            "amad.answers": json.dumps(state["answers"]),
            **preprocess.export_metadata(),
        }
        if "words" in state:  # model folders written before the words were kept have none
            metadata["amad.words"] = json.dumps(state["words"])
        return {"model": GraphSpec(("pixels", "tokens"), ("logits",), (pixels, tokens), metadata, self.model_inputs)}

    def state_from_metadata(self, metadata: dict[str, str]) -> dict:
        if "amad.answers" not in metadata:
            raise AmadError("not an amad VQA export (no amad.answers metadata)")
        state = {"answers": json.loads(metadata["amad.answers"])}
        if "amad.words" in metadata:
            state["words"] = json.loads(metadata["amad.words"])
        return state

    def predict_arguments(self, parser: Any) -> None:
        from amad.tasks.vqa import predict

        predict.predict_arguments(parser)

    def predict(self, source: Any, args: Any) -> None:
        from amad.tasks.vqa import predict

        predict.predict(source, args)

    def agreement(self, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
        """Share of questions with the same answer."""
        same = reference["model"]["answer"] == candidate["model"]["answer"]
        return float(same.float().mean())


class AnswerPredictor(Predictor):
    """One call of the ``model`` graph: answer logits and the best answer's index per question."""

    def __call__(self, batch: dict) -> dict[str, Any]:
        logits = self.graphs["model"](batch["pixels"], batch["tokens"])["logits"]  # (B, A)
        return {"logits": logits, "answer": logits.argmax(-1)}
