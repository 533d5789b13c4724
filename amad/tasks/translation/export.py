"""How a translation model's two graphs become ONNX graphs (:meth:`TranslationTask.export_specs
<amad.tasks.translation.task.TranslationTask.export_specs>`)."""

from __future__ import annotations

import json
from typing import Any

import torch

from amad.contracts.graph import BATCH_AXIS, Graph, GraphSpec
from amad.generation.decoder_state import PRESENT, example_decoder_inputs
from amad.tasks.translation.predictor import CACHE_NAMES, memory_axes

SOURCE_AXIS = "source"


def export_specs(preprocess: Any, state: dict, graphs: dict[str, Graph]) -> dict[str, GraphSpec]:
    """``encoder`` and ``decoder`` specs (see the task's docstring)."""
    encoder, decoder = graphs["encoder"], graphs["decoder"]
    image = encoder.image
    memory = memory_axes(image)
    metadata = {
        **preprocess.export_metadata(),
        **encoder.metadata,
        "amad.state": json.dumps({key: value for key, value in state.items() if key != "vocabulary"}),
    }
    encoder_names = ("pixels", "source") if image else ("source",)

    def encoder_inputs(batch: dict) -> tuple:
        return (batch["pixels"], batch["source"]) if image else (batch["source"],)

    def decoder_inputs(batch: dict, new_tokens: int = 1) -> tuple:
        with torch.no_grad():
            first = encoder(*encoder_inputs(batch))
        return example_decoder_inputs(first, decoder, tuple(memory), CACHE_NAMES, new_tokens)

    pixels = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
    pixels[1] = 1.0
    source = preprocess.source.tokenize(["a b c d", "a"])
    example = {"pixels": pixels, "source": source}
    memory_dynamic = {
        name: ({0: BATCH_AXIS, 1: SOURCE_AXIS} if axis == 0 else {1: BATCH_AXIS, 3: SOURCE_AXIS})
        if "text" in name or name == "source_real"
        else {1: BATCH_AXIS}
        for name, axis in memory.items()
    }
    decoder_axes = {
        "tokens": {0: BATCH_AXIS, 1: "step"},
        **memory_dynamic,
        **{name: {1: BATCH_AXIS, 3: "past"} for name in CACHE_NAMES},
    }
    context = preprocess.context_length
    return {
        "encoder": GraphSpec(
            encoder_names,
            ("logits", *memory, *CACHE_NAMES),
            encoder_inputs(example),
            metadata,
            encoder_inputs,
            {"source": {0: BATCH_AXIS, 1: SOURCE_AXIS}},
            {SOURCE_AXIS: context},
        ),
        "decoder": GraphSpec(
            ("tokens", *memory, *CACHE_NAMES),
            ("logits", *(PRESENT + name for name in CACHE_NAMES)),
            decoder_inputs(example, new_tokens=2),
            metadata,
            decoder_inputs,
            decoder_axes,
            # the positions: past + step <= context_length - 1 (the decoder's table)
            {"step": context - 1, "past": context - 1, SOURCE_AXIS: context},
        ),
    }
