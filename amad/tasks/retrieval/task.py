"""The ``retrieval`` task: CLIP-style image-text retrieval with several captions per image.

Model: a CLIP (:class:`~amad.tasks.retrieval.model.RetrievalModel`); inputs ``(pixels [B, 3, H, W],
tokens [B, L])`` of image-caption pairs, outputs the pairs' ``scaled_image_embedding`` and
``scaled_text_embedding`` ``[B, E]`` (their products are the in-batch logits). Task loss: the symmetric contrastive loss (every caption of an
image is a match); output distillation: KL between teacher and student similarity distributions
in both directions. Evaluation: recall@1/5/10 both ways. Exported as two graphs, ``image`` and
``text``, each returning unit-length embeddings. No state: the prepared data fixes nothing about
the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.config.typed import require
from amad.contracts.graph import Graph, GraphSpec, Predictor
from amad.contracts.task import TASKS, GroupShape, Task
from amad.tasks.checks import (
    check_hf_text_folder,
    check_open_clip_checkpoint,
    check_pretrained,
    check_shared_preprocessing,
    read_summary,
)
from amad.tasks.retrieval.config import ATTENTION_GROUPS, DataConfig, EvaluateConfig, ModelConfig


@TASKS.register("retrieval")
class RetrievalTask(Task):
    data_config = DataConfig
    evaluate_config = EvaluateConfig
    model_config = ModelConfig
    attention_groups = ATTENTION_GROUPS
    primary_metric = "mean_recall"
    graph_names = ("image", "text")

    def group_shapes(self, config: ModelConfig, key: str) -> dict[str, GroupShape]:
        vision, text = config.vision, config.text
        image_tokens = (vision.image_size // vision.patch_size) ** 2 + 1
        length = text.context_length
        return {
            "vision_self": GroupShape(
                vision.depth, vision.heads, vision.width, image_tokens, image_tokens, f"{key}.vision"
            ),
            "text_self": GroupShape(text.depth, text.heads, text.width, length, length, f"{key}.text"),
        }

    def check_files(self, config: ModelConfig, key: str) -> None:
        check_pretrained(config, key)
        if config.text.hf_model is not None:
            check_hf_text_folder(config.text, f"{key}.text")
        if config.checkpoint is not None:
            require(
                config.text.hf_model is None,
                f"{key}.checkpoint",
                f"an open_clip checkpoint holds open_clip's own text tower; set {key}.text.hf_model to null",
            )
            check_open_clip_checkpoint(config, key)

    def check_model(self, config: ModelConfig, key: str) -> None:
        if config.architecture is not None:
            from amad.tasks.retrieval.model import unsupported_settings

            unsupported = unsupported_settings(config.architecture)
            require(
                not unsupported,
                f"{key}.architecture",
                f"{config.architecture} uses open_clip settings amad cannot distil or tokenise: {', '.join(unsupported)}",
            )
        if config.text.hf_model is not None:
            from amad.data.preprocess import check_hf_tokenizer

            check_hf_tokenizer(config.text.hf_model, f"{key}.text.hf_model")

    def check_student(self, teacher: ModelConfig, student: ModelConfig, key: str) -> None:
        check_shared_preprocessing(teacher, student, key)
        require(
            student.architecture == teacher.architecture,
            f"{key}.architecture",
            f"must equal teacher.architecture ({teacher.architecture}): it sets the image normalisation",
        )

    def check_batch_sizes(self, split_sizes: dict[str, int], batch_sizes: dict[str, int]) -> None:
        super().check_batch_sizes(split_sizes, batch_sizes)
        for key, size in batch_sizes.items():
            require(size >= 2, key, f"the contrastive loss needs at least 2 pairs a batch, got {size}")

    # -- data -------------------------------------------------------------------------------
    def prepare(
        self, config: DataConfig, seed: int, out: Path, check_splits: Callable | None = None, log: Callable = print
    ) -> dict:
        from amad.tasks.retrieval.prepare import prepare

        return prepare(config, seed, out, check_splits, log)

    def _summary(self, data_dir: Path) -> dict:
        from amad.tasks.retrieval.prepare import SUMMARY

        return read_summary(data_dir, SUMMARY)

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        """Image-caption pairs per split (the training samples)."""
        return {split: entry["captions"] for split, entry in self._summary(data_dir)["splits"].items()}

    def read_state(self, data_dir: Path) -> dict:
        self._summary(data_dir)  # the folder must be a prepared retrieval folder
        return {}

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        from amad.data.captions.pairs import PairDataset

        return PairDataset(data_dir, split, preprocess, classes=self._summary(data_dir).get("classes"))

    # -- models -----------------------------------------------------------------------------
    def preprocess(self, config: ModelConfig, state: dict | None = None) -> Any:
        from amad.tasks.retrieval.model import preprocess_of

        return preprocess_of(config)

    def build_model(self, config: ModelConfig, state: dict) -> Any:
        from amad.tasks.retrieval.model import RetrievalModel, load_open_clip_checkpoint

        model = RetrievalModel(config)
        if config.checkpoint is not None:
            load_open_clip_checkpoint(model, config.checkpoint, "checkpoint")
        return model

    def without_pretrained_weights(self, config: ModelConfig) -> ModelConfig:
        text = dataclasses.replace(config.text, hf_pretrained=False)
        return dataclasses.replace(config, text=text, checkpoint=None, pretrained=None)

    def module_groups(self, model: Any) -> dict[str, list[str]]:
        return model.attention_groups()

    def model_inputs(self, batch: dict) -> tuple:
        return batch["pixels"], batch["tokens"]

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        from amad.data.preprocess import PAD_TOKEN_ID

        if group == "vision_self":
            return None, None
        real_tokens = batch["tokens"] != PAD_TOKEN_ID
        return real_tokens, real_tokens

    def token_labels(self, group: str, batch: dict, preprocess: Any) -> tuple[list[str] | None, list[str] | None]:
        if group == "vision_self":
            return None, None
        words = preprocess.token_strings(batch["tokens"][0].tolist())
        return words, words

    # -- objective --------------------------------------------------------------------------
    def task_loss(self, outputs: dict[str, Any], batch: dict, config: Any) -> Any:
        from amad.losses.contrastive import contrastive_loss

        return contrastive_loss(_pair_logits(outputs), batch["image"])

    def output_distillation(
        self, student_outputs: dict[str, Any], teacher_targets: dict[str, Any], batch: dict, temperature: float
    ) -> Any:
        from amad.losses.contrastive import similarity_distillation

        return similarity_distillation(_pair_logits(student_outputs), _pair_logits(teacher_targets), temperature)

    # -- evaluation and export ----------------------------------------------------------------
    def graphs(self, model: Any) -> dict[str, Graph]:
        from amad.tasks.retrieval.model import ImageEncoder, TextEncoder

        return {"image": ImageEncoder(model), "text": TextEncoder(model)}

    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        return EmbeddingPredictor(graphs)

    def evaluate(
        self,
        predictor: Predictor,
        dataset: Any,
        *,
        settings: EvaluateConfig | None = None,
        device: Any = "cpu",
        batch_size: int = 256,
    ) -> dict:
        """Recall both ways; with ``settings``, zero-shot top-1 where the images have classes
        (``breakdown.zero_shot_top1`` over the split's images, ``zero_shot_classes`` candidates)."""
        from amad.data.captions.pairs import CaptionDataset, ImageDataset
        from amad.models.evaluation import collect
        from amad.tasks.retrieval.evaluation import recall_report, zero_shot_top1

        def run(items: Any, embedding: str):
            return collect(predictor, items, device=device, batch_size=batch_size)[embedding]

        images = run(ImageDataset(dataset), "image_embedding")
        captions = run(CaptionDataset(dataset), "text_embedding")
        report = recall_report(images, captions, dataset.image_of_caption)
        if settings is not None and dataset.labels is not None:
            templates = settings.zero_shot.templates
            prompts = [template.replace("{}", name) for name in dataset.classes for template in templates]
            tokens = dataset.preprocess.tokenize(prompts)
            prompt_embeddings = run([{"tokens": row} for row in tokens], "text_embedding")
            report["breakdown"]["zero_shot_top1"] = zero_shot_top1(
                images, prompt_embeddings.view(len(dataset.classes), len(templates), -1), dataset.labels
            )
            report["breakdown"]["zero_shot_classes"] = len(dataset.classes)
        return report

    def describe(self, dataset: Any, index: int) -> str:
        image = int(dataset.image_of_caption[index])
        return f"{dataset.records[image].id}: {dataset.captions[index]}"

    def example_inputs(self, preprocess: Any, batch_size: int) -> tuple:
        import torch

        pixels = torch.zeros(batch_size, 3, preprocess.image_size, preprocess.image_size)
        return pixels, preprocess.tokenize(["a"] * batch_size)

    def export_specs(self, preprocess: Any, state: dict, graphs: dict | None = None) -> dict[str, GraphSpec]:
        import torch

        metadata = preprocess.export_metadata()
        pixels = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
        tokens = preprocess.tokenize(["a red circle", "two shapes: a blue square and a green triangle"])
        return {
            "image": GraphSpec(("pixels",), ("image_embedding",), (pixels,), metadata, lambda b: (b["pixels"],)),
            "text": GraphSpec(("tokens",), ("text_embedding",), (tokens,), metadata, lambda b: (b["tokens"],)),
        }

    def parity_inputs(self, dataset: Any, count: int) -> dict[str, Any]:
        """The first ``count`` distinct validation images, and all their captions."""
        from torch.utils.data import Subset

        from amad.data.captions.pairs import CaptionDataset, ImageDataset

        images = min(count, len(dataset.records))
        captions = int((dataset.image_of_caption < images).sum())  # an image's captions are contiguous
        return {
            "image": Subset(ImageDataset(dataset), range(images)),
            "text": Subset(CaptionDataset(dataset), range(captions)),
        }

    def predict_arguments(self, parser: Any) -> None:
        from amad.tasks.retrieval import predict

        predict.predict_arguments(parser)

    def predict(self, source: Any, args: Any) -> None:
        from amad.tasks.retrieval import predict

        predict.predict(source, args)

    def agreement(self, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
        """Share of captions whose top-1 image (among the compared, distinct images) is the same."""
        best = [
            (p["text"]["text_embedding"] @ p["image"]["image_embedding"].t()).argmax(1) for p in (reference, candidate)
        ]
        return float((best[0] == best[1]).float().mean())


def _pair_logits(outputs: dict[str, Any]) -> Any:
    from amad.losses.contrastive import pair_logits

    return pair_logits(outputs["scaled_image_embedding"], outputs["scaled_text_embedding"])


class EmbeddingPredictor(Predictor):
    """Unit-length embeddings of what a batch holds: ``image_embedding`` of its ``pixels`` (the ``image``
    graph), ``text_embedding`` of its ``tokens`` (the ``text`` graph)."""

    def __call__(self, batch: dict) -> dict[str, Any]:
        predictions = {}
        if "pixels" in batch:
            predictions.update(self.graphs["image"](batch["pixels"]))
        if "tokens" in batch:
            predictions.update(self.graphs["text"](batch["tokens"]))
        return predictions
