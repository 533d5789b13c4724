"""The ``captioning`` task: an open_clip CoCa that writes a caption for an image.

Model: :class:`~amad.tasks.captioning.model.CaptioningModel`; inputs ``(pixels [B, 3, H, W], tokens
[B, L])`` of image-caption pairs, outputs the teacher-forced ``logits [B, L-1, V]`` and the pair's
contrastive embeddings. Task loss: caption cross-entropy (padding masked) plus CoCa's contrastive
loss, weighted by the model config's ``loss``; output distillation: KL over the vocabulary at every
caption position from the teacher's top-k logits (``distill.output.top_k``). Evaluation: greedy or
beam captions of every image of the split, scored by CIDEr-D (primary), BLEU-1..4, METEOR and ROUGE-L
against all its references, and the best constant caption's CIDEr-D beside them. Exported as two
graphs, ``image`` (encoder + cross-attention keys / values + first step) and ``decoder`` (one step
with a key/value cache), driven by amad's decode loop. State: the captions' vocabulary (learned at
``prepare``, or open_clip's), their context and special token ids.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.config.typed import require
from amad.contracts.graph import Graph, Predictor
from amad.contracts.task import TASKS, GroupShape, Task
from amad.tasks.captioning.config import ATTENTION_GROUPS, DataConfig, EvaluateConfig, ModelConfig
from amad.tasks.checks import check_open_clip_checkpoint, check_pretrained, read_summary
from amad.tasks.generative import GenerativeTask, check_generation_lengths


@TASKS.register("captioning")
class CaptioningTask(GenerativeTask, Task):
    data_config = DataConfig
    evaluate_config = EvaluateConfig
    model_config = ModelConfig
    attention_groups = ATTENTION_GROUPS
    primary_metric = "cider_d"
    graph_names = ("image", "decoder")
    serving_loop = "amad.tasks.captioning.serving:Captioner"
    served_graph = "caption"  # predictor.SERVED_GRAPH
    generative = True
    target_key = "tokens"

    def group_shapes(self, config: ModelConfig, key: str) -> dict[str, GroupShape]:
        vision, text, decoder = config.vision, config.text, config.decoder
        patches = (vision.image_size // vision.patch_size) ** 2 + 1
        length = text.context_length
        width = config.embed_dim
        return {
            "vision_self": GroupShape(vision.depth, vision.heads, vision.width, patches, patches, f"{key}.vision"),
            "text_self": GroupShape(text.depth, text.heads, width, length + 1, length + 1, f"{key}.text"),
            "decoder_self": GroupShape(decoder.depth, decoder.heads, width, length - 1, length - 1, f"{key}.decoder"),
            "decoder_cross": GroupShape(
                decoder.depth, decoder.heads, width, length - 1, vision.pooler_queries - 1, f"{key}.decoder"
            ),
        }

    def check_sections(self, params: Any) -> None:
        data = params.data
        for key, config in [("teacher", params.teacher), *((f"students.{n}", s) for n, s in params.students.items())]:
            require(
                config.text.context_length == data.context_length,
                f"{key}.text.context_length",
                f"must equal data.context_length ({data.context_length}): the prepared captions' length",
            )
            require(
                config.checkpoint is None or data.vocabulary.kind == "open_clip",
                "data.vocabulary.kind",
                f"{key}.checkpoint is an open_clip CoCa, whose token embedding is open_clip's vocabulary: set open_clip",
            )
        check_generation_lengths(params, "captions")

    def check_files(self, config: ModelConfig, key: str) -> None:
        check_pretrained(config, key)
        if config.checkpoint is not None:
            check_open_clip_checkpoint(config, key)

    def check_student(self, teacher: ModelConfig, student: ModelConfig, key: str) -> None:
        require(
            student.architecture == teacher.architecture,
            f"{key}.architecture",
            f"must equal teacher.architecture ({teacher.architecture}): it sets the image normalisation",
        )
        require(
            student.vision.image_size == teacher.vision.image_size,
            f"{key}.vision.image_size",
            f"must equal teacher.vision.image_size ({teacher.vision.image_size}): teacher and students share the preprocessing",
        )

    # -- data -------------------------------------------------------------------------------
    def prepare(
        self, config: DataConfig, seed: int, out: Path, check_splits: Callable | None = None, log: Callable = print
    ) -> dict:
        from amad.tasks.captioning.prepare import prepare

        return prepare(config, seed, out, check_splits, log)

    def _summary(self, data_dir: Path) -> dict:
        from amad.tasks.captioning.prepare import SUMMARY

        summary = read_summary(data_dir, SUMMARY)
        if "vocabulary" not in summary:
            from amad.errors import AmadError

            raise AmadError(f"{data_dir}: not a prepared captioning folder (re-run prepare: dvc repro prepare)")
        return summary

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        """Image-caption pairs per split (the training samples)."""
        return {split: entry["captions"] for split, entry in self._summary(data_dir)["splits"].items()}

    def read_state(self, data_dir: Path) -> dict:
        from amad.tasks.captioning.prepare import VOCABULARY

        summary = self._summary(data_dir)
        vocabulary = summary["vocabulary"]
        learned = Path(data_dir) / VOCABULARY
        return {
            "context_length": summary["context_length"],
            "vocab_size": vocabulary["size"],
            "special_tokens": {name: vocabulary[name] for name in ("start", "end", "pad")},
            "vocabulary": learned.read_text() if learned.is_file() else None,
        }

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        from amad.data.captions.pairs import PairDataset

        return PairDataset(data_dir, split, preprocess)

    # -- models -----------------------------------------------------------------------------
    def preprocess(self, config: ModelConfig, state: dict | None = None) -> Any:
        from amad.tasks.captioning.model import preprocess_of

        if state is None:
            raise ValueError("the captioning preprocessing needs the prepared data's state (its vocabulary)")
        return preprocess_of(config, state["context_length"], state["vocabulary"])

    def build_model(self, config: ModelConfig, state: dict) -> Any:
        from amad.generation.search import SpecialTokens
        from amad.tasks.captioning.model import CaptioningModel, load_open_clip_checkpoint

        require(
            config.text.context_length == state["context_length"],
            "text.context_length",
            f"the prepared captions are {state['context_length']} tokens long (data.context_length); re-run prepare",
        )
        special = SpecialTokens(**state["special_tokens"])
        model = CaptioningModel(config, state["vocab_size"], state["context_length"], special)
        if config.checkpoint is not None:
            load_open_clip_checkpoint(model, config.checkpoint, "checkpoint")
        return model

    def without_pretrained_weights(self, config: ModelConfig) -> ModelConfig:
        return dataclasses.replace(config, checkpoint=None, pretrained=None)

    def module_groups(self, model: Any) -> dict[str, list[str]]:
        return model.attention_groups()

    def model_inputs(self, batch: dict) -> tuple:
        return batch["pixels"], batch["tokens"]

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        import torch

        from amad.data.preprocess import PAD_TOKEN_ID

        real = batch["tokens"] != PAD_TOKEN_ID  # (B, L)
        if group == "vision_self":
            return None, None
        if group == "text_self":  # the caption's tokens, then CoCa's class token
            with_class = torch.cat([real, real.new_ones(len(real), 1)], dim=1)
            return with_class, with_class
        inputs = real[:, :-1]  # the decoder reads tokens 0..L-2
        return (inputs, inputs) if group == "decoder_self" else (inputs, None)

    def token_labels(self, group: str, batch: dict, preprocess: Any) -> tuple[list[str] | None, list[str] | None]:
        if group == "vision_self":
            return None, None
        words = preprocess.token_strings(batch["tokens"][0].tolist())
        if group == "text_self":
            return [*words, "<cls>"], [*words, "<cls>"]
        return (words[:-1], words[:-1]) if group == "decoder_self" else (words[:-1], None)

    # -- objective --------------------------------------------------------------------------
    def task_loss(self, outputs: dict[str, Any], batch: dict, config: ModelConfig) -> Any:
        from amad.losses.contrastive import contrastive_loss, pair_logits
        from amad.losses.next_token import next_token_loss

        loss = config.loss.caption * next_token_loss(outputs["logits"], batch["tokens"])
        if config.loss.contrastive > 0:
            logits = pair_logits(outputs["scaled_image_embedding"], outputs["scaled_text_embedding"])
            loss = loss + config.loss.contrastive * contrastive_loss(logits, batch["image"])
        return loss

    # -- evaluation and export ----------------------------------------------------------------
    def graphs(self, model: Any) -> dict[str, Graph]:
        from amad.tasks.captioning.decoder import DecoderGraph, ImageGraph

        return {"image": ImageGraph(model), "decoder": DecoderGraph(model)}

    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        """amad's decode loop over the ``image`` and ``decoder`` graphs; over a served captioner
        (``{"caption"}``: the loop in the server), one call per batch."""
        from amad.tasks.captioning.predictor import SERVED_GRAPH, CaptionPredictor, ServedCaptionPredictor

        if set(graphs) == {SERVED_GRAPH}:
            return ServedCaptionPredictor(graphs)
        return CaptionPredictor(graphs)

    def evaluate(
        self,
        predictor: Predictor,
        dataset: Any,
        *,
        settings: EvaluateConfig | None = None,
        device: Any = "cpu",
        batch_size: int = 256,
    ) -> dict:
        """CIDEr-D of the split's captions (greedy; with ``settings``, ``settings.generation`` and every
        metric, the best constant caption and example captions in the breakdown)."""
        from amad.tasks.captioning.evaluation import caption_report

        if settings is not None:
            predictor = predictor.with_settings(generation=settings.generation)
        return caption_report(predictor, dataset, settings, device=device, batch_size=batch_size)

    def describe(self, dataset: Any, index: int) -> str:
        image = int(dataset.image_of_caption[index])
        return f"{dataset.records[image].id}: {dataset.captions[index]}"

    def example_inputs(self, preprocess: Any, batch_size: int) -> tuple:
        import torch

        pixels = torch.zeros(batch_size, 3, preprocess.image_size, preprocess.image_size)
        return pixels, preprocess.tokenize(["a"] * batch_size)

    def export_specs(self, preprocess: Any, state: dict, graphs: dict[str, Graph] | None = None) -> dict[str, Any]:
        """``image`` (``pixels`` -> first logits, cross keys / values, start cache) and ``decoder`` (tokens,
        cross keys / values, cache -> logits, present cache; dynamic ``step`` and ``past`` axes). The
        decoder's inputs are the torch image graph's outputs on the batch, then two greedy steps: the
        traced example has 2 new tokens after 3 cached ones (sizes of 1 would be fixed in the graph)."""
        import torch

        from amad.contracts.graph import BATCH_AXIS, GraphSpec
        from amad.generation.decoder_state import PRESENT, example_decoder_inputs
        from amad.tasks.captioning.predictor import CACHE_NAMES, CROSS_NAMES

        if graphs is None:
            raise ValueError(
                "the captioning export specs need the model's torch graphs (the decoder reads the image graph's outputs)"
            )
        image, decoder = graphs["image"], graphs["decoder"]
        metadata = {
            **preprocess.export_metadata(),
            **image.metadata,
            "amad.state": json.dumps({key: value for key, value in state.items() if key != "vocabulary"}),
        }
        cache_axes = {1: BATCH_AXIS, 3: "past"}
        axes = {
            "tokens": {0: BATCH_AXIS, 1: "step"},
            **{name: {1: BATCH_AXIS} for name in CROSS_NAMES},
            **dict.fromkeys(CACHE_NAMES, cache_axes),
        }

        def decoder_inputs(batch: dict, new_tokens: int = 1) -> tuple:
            with torch.no_grad():
                first = image(batch["pixels"])
            return example_decoder_inputs(first, decoder, CROSS_NAMES, CACHE_NAMES, new_tokens)

        pixels = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
        pixels[1] = 1.0
        decoder_outputs = ("logits", *(PRESENT + name for name in CACHE_NAMES))
        return {
            "image": GraphSpec(
                ("pixels",), ("logits", *CROSS_NAMES, *CACHE_NAMES), (pixels,), metadata, lambda b: (b["pixels"],)
            ),
            "decoder": GraphSpec(
                ("tokens", *CROSS_NAMES, *CACHE_NAMES),
                decoder_outputs,
                decoder_inputs({"pixels": pixels}, new_tokens=2),
                metadata,
                decoder_inputs,
                axes,
                # the positions: past + step <= context_length + 1 (the text tower's table)
                {"step": preprocess.context_length - 1, "past": preprocess.context_length - 1},
            ),
        }

    def generation_calls(self) -> dict[str, Any]:
        """``caption``: a greedy caption with the key/value cache, from the pixels to the last token;
        ``caption_uncached``: the same caption recomputing the prefix at every step (fp32 only)."""
        from amad.contracts.graph import GenerationCall
        from amad.tasks.captioning.predictor import timed_caption

        return {
            "caption": GenerationCall("image", lambda graphs: timed_caption(graphs, cached=True)),
            "caption_uncached": GenerationCall(
                "image", lambda graphs: timed_caption(graphs, cached=False), int8=False, baseline_of="caption"
            ),
        }

    def decode_cache_bytes(self, config: ModelConfig, state: dict) -> dict[str, int]:
        """fp32 keys and values: per generated token, 2 x (text + decoder layers) x heads x head width x 4
        bytes (heads x head width is ``embed_dim``); the cross-attention's, set once per image by the
        ``pooler_queries - 1`` image tokens, 2 x decoder layers x image tokens x ``embed_dim`` x 4."""
        layers = config.text.depth + config.decoder.depth
        image_tokens = config.vision.pooler_queries - 1
        return {
            "self_attention_per_token": 2 * layers * config.embed_dim * 4,
            "cross_attention": 2 * config.decoder.depth * image_tokens * config.embed_dim * 4,
        }

    def sequence_targets(self, predictor: Predictor, dataset: Any, generation: Any, device: Any) -> list[dict]:
        """``{"id", "caption"}`` per training image: the predictor's caption, decoded with ``generation``."""
        from amad.tasks.captioning.sequences import teacher_captions

        return teacher_captions(predictor, dataset, generation, device)

    def with_sequence_targets(self, dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
        from amad.tasks.captioning.sequences import with_teacher_captions

        return with_teacher_captions(dataset, rows, targets, source)

    def parity_inputs(self, dataset: Any, count: int) -> dict[str, Any]:
        """The first ``count`` distinct validation images (each graph's parity runs on a decode of them)."""
        from torch.utils.data import Subset

        from amad.data.captions.pairs import ImageDataset

        images = Subset(ImageDataset(dataset), range(min(count, len(dataset.records))))
        return dict.fromkeys(self.graph_names, images)

    def report_pages(
        self,
        teacher_dir: Path,
        student_dirs: dict[str, Path],
        attention_models: list[str],
        data_dir: Path,
        out: Path,
    ) -> str:
        """``captions.png`` (validation images with every model's greedy caption) and
        ``cross_attention/<model>.png`` (chosen words, teacher heads beside student heads)."""
        from amad.tasks.captioning.report import report_pages

        teacher, students, dataset = self.report_models(teacher_dir, student_dirs, data_dir)
        return report_pages(teacher, students, attention_models, dataset, out)

    def predict_arguments(self, parser: Any) -> None:
        from amad.tasks.captioning import predict

        predict.predict_arguments(parser)

    def predict(self, source: Any, args: Any) -> None:
        from amad.tasks.captioning import predict

        predict.predict(source, args)
