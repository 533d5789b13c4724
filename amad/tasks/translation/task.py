"""The ``translation`` task: multimodal machine translation (Multi30K): an image's English description
translated into German (or French, Czech), with the image as context.

Model: :class:`~amad.tasks.translation.model.TranslationModel`; inputs ``(pixels [B, 3, H, W], source
[B, L], target [B, L])``, output the teacher-forced ``logits [B, L-1, V]``. Task loss: next-token
cross-entropy, padding masked; output distillation: KL over the vocabulary at every target position
from the teacher's top-k logits (``distill.output.top_k``). Evaluation: greedy or beam translations of
every sentence of the split, scored by sacreBLEU's BLEU (primary) and chrF, cased and lowercased, and
the BLEU drop with the images shuffled across sentences. Exported as two graphs, ``encoder`` (source
and image encoders, cross-attention keys / values, first step) and ``decoder`` (one step with a
key/value cache), driven by amad's decode loop. State: the joint subword vocabulary (learned at
``prepare``), the context, the special token ids and the language pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.config.typed import require
from amad.contracts.graph import Graph, Predictor
from amad.contracts.task import TASKS, GroupShape, Task
from amad.tasks.checks import check_hf_text_folder, check_pretrained, read_summary
from amad.tasks.generative import GenerativeTask, check_generation_lengths
from amad.tasks.translation.config import ATTENTION_GROUPS, DataConfig, EvaluateConfig, ModelConfig


@TASKS.register("translation")
class TranslationTask(GenerativeTask, Task):
    data_config = DataConfig
    evaluate_config = EvaluateConfig
    model_config = ModelConfig
    attention_groups = ATTENTION_GROUPS
    primary_metric = "bleu"
    graph_names = ("encoder", "decoder")
    generative = True
    target_key = "target"
    serving_loop = "amad.tasks.translation.serving:Translator"
    served_graph = "translation"  # predictor.SERVED_GRAPH

    def group_shapes(self, config: ModelConfig, key: str) -> dict[str, GroupShape]:
        length = config.context_length
        width, source, decoder = config.embed_dim, config.source, config.decoder
        shapes = {
            "source_self": GroupShape(source.depth, source.heads, source.width, length, length, f"{key}.source"),
            "decoder_self": GroupShape(decoder.depth, decoder.heads, width, length - 1, length - 1, f"{key}.decoder"),
            "decoder_cross_text": GroupShape(decoder.depth, decoder.heads, width, length - 1, length, f"{key}.decoder"),
        }
        vision = config.vision
        if vision is not None:
            patches = (config.image_size // vision.patch_size) ** 2 + 1
            shapes["vision_self"] = GroupShape(
                vision.depth, vision.heads, vision.width, patches, patches, f"{key}.vision"
            )
            shapes["decoder_cross_image"] = GroupShape(
                decoder.depth, decoder.heads, width, length - 1, vision.pooler_queries - 1, f"{key}.decoder"
            )
        return {group: shapes[group] for group in ATTENTION_GROUPS if group in shapes}

    def check_sections(self, params: Any) -> None:
        data = params.data
        for key, config in [("teacher", params.teacher), *((f"students.{n}", s) for n, s in params.students.items())]:
            require(
                config.context_length == data.context_length,
                f"{key}.context_length",
                f"must equal data.context_length ({data.context_length}): the prepared sentences' length",
            )
        check_generation_lengths(params, "sentences")
        require(
            params.teacher.vision is not None,
            "teacher.vision",
            "the teacher reads the image (null is for a text-only student, the baseline that shows what the image adds)",
        )

    def check_files(self, config: ModelConfig, key: str) -> None:
        check_pretrained(config, key)
        if config.source.hf_model is not None:
            check_hf_text_folder(config.source, f"{key}.source", (config.context_length, f"{key}.context_length"))

    def check_model(self, config: ModelConfig, key: str) -> None:
        if config.source.hf_model is not None:
            from amad.data.preprocess import check_hf_tokenizer

            check_hf_tokenizer(config.source.hf_model, f"{key}.source.hf_model")

    def check_student(self, teacher: ModelConfig, student: ModelConfig, key: str) -> None:
        require(
            student.source.hf_model == teacher.source.hf_model,
            f"{key}.source.hf_model",
            f"must equal teacher.source.hf_model ({teacher.source.hf_model}): teacher and students read the same "
            "source tokens (the attention maps over them are aligned)",
        )
        require(
            student.image_size == teacher.image_size,
            f"{key}.image_size",
            f"must equal teacher.image_size ({teacher.image_size}): teacher and students share the preprocessing",
        )

    # -- data -------------------------------------------------------------------------------
    def prepare(
        self, config: DataConfig, seed: int, out: Path, check_splits: Callable | None = None, log: Callable = print
    ) -> dict:
        from amad.tasks.translation.prepare import prepare

        return prepare(config, seed, out, check_splits, log)

    def _summary(self, data_dir: Path) -> dict:
        from amad.tasks.translation.prepare import SUMMARY

        summary = read_summary(data_dir, SUMMARY)
        if "languages" not in summary:
            from amad.errors import AmadError

            raise AmadError(f"{data_dir}: not a prepared translation folder (re-run prepare: dvc repro prepare)")
        return summary

    def split_sizes(self, data_dir: Path) -> dict[str, int]:
        """Sentence pairs per split (the training samples)."""
        return {split: entry["pairs"] for split, entry in self._summary(data_dir)["splits"].items()}

    def read_state(self, data_dir: Path) -> dict:
        from amad.tasks.translation.prepare import VOCABULARY

        summary = self._summary(data_dir)
        vocabulary = summary["vocabulary"]
        return {
            "context_length": summary["context_length"],
            "vocab_size": vocabulary["size"],
            "special_tokens": {name: vocabulary[name] for name in ("start", "end", "pad")},
            "languages": summary["languages"],
            "vocabulary": (Path(data_dir) / VOCABULARY).read_text(),
        }

    def dataset(self, data_dir: Path, split: str, preprocess: Any, state: dict) -> Any:
        """The split's pairs; with a Hugging Face source encoder (its own tokenizer, which ``prepare``
        does not count with), the source sentences longer than the context are counted here and refused
        above the prepared data's ``data.max_truncated``, naming the split and the longest."""
        from amad.tasks.translation.dataset import TranslationDataset, source_truncation

        dataset = TranslationDataset(data_dir, split, preprocess, target_language=state["languages"]["target"])
        if preprocess.source is not preprocess:
            limit = self._summary(data_dir).get("max_truncated", 1.0)  # folders prepared before it was kept
            source_truncation(dataset, split, limit)
        return dataset

    # -- models -----------------------------------------------------------------------------
    def preprocess_from_dict(self, data: dict) -> Any:
        from amad.tasks.translation.preprocess import TranslationPreprocess

        return TranslationPreprocess.from_dict(data)

    def preprocess_from_metadata(self, metadata: dict[str, str]) -> Any:
        """The export's preprocessing; the source side's tokenizer from ``amad.source_tokenizer`` where
        it has its own (the target side's is the joint vocabulary, in the preprocessing itself)."""
        from amad.tasks.translation.preprocess import preprocess_from_metadata

        return preprocess_from_metadata(metadata)

    def preprocess(self, config: ModelConfig, state: dict | None = None) -> Any:
        from amad.tasks.translation.model import preprocess_of

        if state is None:
            raise ValueError("the translation preprocessing needs the prepared data's state (its vocabulary)")
        return preprocess_of(config, state["context_length"], state["vocabulary"])

    def build_model(self, config: ModelConfig, state: dict) -> Any:
        from amad.generation.search import SpecialTokens
        from amad.tasks.translation.model import TranslationModel

        require(
            config.context_length == state["context_length"],
            "context_length",
            f"the prepared sentences are {state['context_length']} tokens long (data.context_length); re-run prepare",
        )
        special = SpecialTokens(**state["special_tokens"])
        return TranslationModel(config, state["vocab_size"], state["context_length"], special)

    def without_pretrained_weights(self, config: ModelConfig) -> ModelConfig:
        return dataclasses.replace(config, pretrained=None)

    def module_groups(self, model: Any) -> dict[str, list[str]]:
        return model.attention_groups()

    def model_inputs(self, batch: dict) -> tuple:
        return batch["pixels"], batch["source"], batch["target"]

    def attention_masks(self, group: str, batch: dict) -> tuple[Any, Any]:
        from amad.data.preprocess import PAD_TOKEN_ID

        source = batch["source"] != PAD_TOKEN_ID
        target = (batch["target"] != PAD_TOKEN_ID)[:, :-1]  # the decoder reads tokens 0..L-2
        return {
            "vision_self": (None, None),
            "source_self": (source, source),
            "decoder_self": (target, target),
            "decoder_cross_text": (target, source),
            "decoder_cross_image": (target, None),
        }[group]

    def token_labels(self, group: str, batch: dict, preprocess: Any) -> tuple[list[str] | None, list[str] | None]:
        if group == "vision_self":
            return None, None
        source = preprocess.source.token_strings(batch["source"][0].tolist())
        target = preprocess.token_strings(batch["target"][0].tolist())[:-1]
        return {
            "source_self": (source, source),
            "decoder_self": (target, target),
            "decoder_cross_text": (target, source),
            "decoder_cross_image": (target, None),
        }[group]

    # -- objective --------------------------------------------------------------------------
    def task_loss(self, outputs: dict[str, Any], batch: dict, config: ModelConfig) -> Any:
        from amad.losses.next_token import next_token_loss

        return next_token_loss(outputs["logits"], batch["target"])

    # -- evaluation and export ----------------------------------------------------------------
    def graphs(self, model: Any) -> dict[str, Graph]:
        from amad.tasks.translation.graphs import DecoderGraph, EncoderGraph

        return {"encoder": EncoderGraph(model), "decoder": DecoderGraph(model)}

    def predictor(self, graphs: dict[str, Graph]) -> Predictor:
        from amad.tasks.translation.predictor import SERVED_GRAPH, ServedTranslationPredictor, TranslationPredictor

        if set(graphs) == {SERVED_GRAPH}:
            return ServedTranslationPredictor(graphs)
        return TranslationPredictor(graphs)

    def evaluate(
        self,
        predictor: Predictor,
        dataset: Any,
        *,
        settings: EvaluateConfig | None = None,
        device: Any = "cpu",
        batch_size: int = 256,
    ) -> dict:
        """BLEU of the split's translations (greedy; with ``settings``, ``settings.generation``, the
        shuffled-image BLEU and example translations in the breakdown)."""
        from amad.tasks.translation.evaluation import translation_report

        if settings is not None:
            predictor = predictor.with_settings(generation=settings.generation)
        return translation_report(predictor, dataset, settings, device=device, batch_size=batch_size)

    def describe(self, dataset: Any, index: int) -> str:
        pair = dataset.pairs[index]
        return f"{pair.id}: {pair.source} -> {pair.target}"

    def example_inputs(self, preprocess: Any, batch_size: int) -> tuple:
        import torch

        pixels = torch.zeros(batch_size, 3, preprocess.image_size, preprocess.image_size)
        return pixels, preprocess.source.tokenize(["a"] * batch_size), preprocess.tokenize(["a"] * batch_size)

    def export_specs(self, preprocess: Any, state: dict, graphs: dict[str, Graph] | None = None) -> dict[str, Any]:
        """``encoder`` (``pixels``, ``source`` -> first logits, memory, start cache) and ``decoder``
        (tokens, memory, cache -> logits, present cache; dynamic ``step``, ``past`` and ``source``
        axes). The decoder's example is the torch encoder's outputs, then two greedy steps (a cache of
        3 tokens and 2 new ones: sizes of 1 would be fixed in the graph)."""
        from amad.tasks.translation.export import export_specs

        if graphs is None:
            raise ValueError(
                "the translation export specs need the model's torch graphs (the decoder reads the encoder's outputs)"
            )
        return export_specs(preprocess, state, graphs)

    def generation_calls(self) -> dict[str, Any]:
        """``translation``: a greedy translation with the key/value cache, from the inputs to the last
        token; ``translation_uncached``: the same recomputing the prefix at every step (fp32 only)."""
        from amad.contracts.graph import GenerationCall
        from amad.tasks.translation.predictor import timed_translation

        return {
            "translation": GenerationCall("encoder", lambda graphs: timed_translation(graphs, cached=True)),
            "translation_uncached": GenerationCall(
                "encoder", lambda graphs: timed_translation(graphs, cached=False), int8=False, baseline_of="translation"
            ),
        }

    def decode_cache_bytes(self, config: ModelConfig, state: dict) -> dict[str, int]:
        """fp32 keys and values: per generated token, 2 x decoder layers x ``embed_dim`` x 4 bytes (heads x
        head width is ``embed_dim``); per sentence, the cross-attention's over the source tokens (the
        context's ``context_length``, padding included) and the image tokens (``pooler_queries - 1``):
        2 x decoder layers x (source + image tokens) x ``embed_dim`` x 4."""
        layers, width = config.decoder.depth, config.embed_dim
        image_tokens = config.vision.pooler_queries - 1 if config.vision is not None else 0
        return {
            "self_attention_per_token": 2 * layers * width * 4,
            "cross_attention": 2 * layers * (state["context_length"] + image_tokens) * width * 4,
        }

    def sequence_targets(self, predictor: Predictor, dataset: Any, generation: Any, device: Any) -> list[dict]:
        """``{"id", "translation"}`` per training pair: the predictor's translation, decoded with ``generation``."""
        from amad.tasks.translation.sequences import teacher_translations

        return teacher_translations(predictor, dataset, generation, device)

    def with_sequence_targets(self, dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
        from amad.tasks.translation.sequences import with_teacher_translations

        return with_teacher_translations(dataset, rows, targets, source)

    def report_pages(
        self,
        teacher_dir: Path,
        student_dirs: dict[str, Path],
        attention_models: list[str],
        data_dir: Path,
        out: Path,
    ) -> str:
        """``translations.png`` (validation pairs with every model's greedy translation) and
        ``cross_attention/<model>/source.png`` / ``image.png`` (teacher heads beside student heads)."""
        from amad.tasks.translation.report import report_pages

        teacher, students, dataset = self.report_models(teacher_dir, student_dirs, data_dir)
        return report_pages(teacher, students, attention_models, dataset, out)

    def predict_arguments(self, parser: Any) -> None:
        from amad.tasks.translation import predict

        predict.predict_arguments(parser)

    def predict(self, source: Any, args: Any) -> None:
        from amad.tasks.translation import predict

        predict.predict(source, args)
