"""Translation with a key/value cache: the model's two graphs (what is exported and served).

* ``encoder`` (:class:`EncoderGraph`): ``pixels [B, 3, H, W]`` (not for a text-only model) and
  ``source [B, S]`` -> the decoder's memory, computed once per sentence: ``text_cross_keys`` /
  ``text_cross_values`` ``[L, B, H, S, d]`` over the source tokens, ``source_real [B, S]`` (bool, not
  padding), ``image_cross_keys`` / ``image_cross_values`` ``[L, B, H, N, d]`` over the image tokens;
  and the first decoder step on the start token: ``logits [B, V]`` and the self-attention cache
  after it, ``self_keys`` / ``self_values`` ``[L, B, H, 1, d]``.
* ``decoder`` (:class:`DecoderGraph`): ``tokens [B, s]`` (the newest), the memory, the cache of the
  ``t`` tokens before -> ``logits [B, V]`` of the next token and ``present_self_keys`` /
  ``present_self_values`` of all ``t + s``. Fed the whole prefix after the start token with the start
  token's cache, it recomputes every step: the uncached decoder is the same graph.

A test checks the cached logits against the model's teacher-forced ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from amad.generation.cached_attention import causal_step, cross_memory, cross_step, mlp
from amad.generation.decoder_state import PRESENT
from amad.generation.predictor import decoding_metadata
from amad.tasks.translation.predictor import (
    CACHE_NAMES,
    IMAGE_CROSS_NAMES,
    SOURCE_MASK,
    TEXT_CROSS_NAMES,
)


def decode(model: nn.Module, tokens: Tensor, memory: dict[str, Tensor], cache: tuple[Tensor, Tensor] | None) -> dict:
    """``logits [B, V]`` after ``tokens [B, s]`` and the cache of every token so far (``present_*``);
    ``cache`` None: no tokens before ``tokens``."""
    decoder = model.decoder
    past_keys, past_values = cache if cache is not None else (None, None)
    past, steps = (past_keys.shape[3] if cache is not None else 0), tokens.shape[1]
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[past : past + steps]
    source_mask = memory[SOURCE_MASK][:, None, None, :]  # (B, 1, 1, S)
    keys_out, values_out = [], []
    last = len(decoder.resblocks) - 1
    for layer, (block, text_cross) in enumerate(zip(decoder.resblocks, decoder.text_cross)):
        layer_cache = (None, None) if past_keys is None else (past_keys[layer], past_values[layer])
        x, keys, values = causal_step(block, x, *layer_cache)
        x = mlp(block, x)
        keys_out.append(keys)
        values_out.append(values)
        if layer == last:  # from here on only the newest token's state is read
            x = x[:, -1:]
        x = mlp(
            text_cross,
            cross_step(
                text_cross, x, memory["text_cross_keys"][layer], memory["text_cross_values"][layer], source_mask
            ),
        )
        if decoder.image_cross is not None:
            image_cross = decoder.image_cross[layer]
            x = mlp(
                image_cross,
                cross_step(image_cross, x, memory["image_cross_keys"][layer], memory["image_cross_values"][layer]),
            )
    logits = decoder.projection(decoder.ln_final(x[:, -1]))
    return {
        "logits": logits,
        PRESENT + "self_keys": torch.stack(keys_out),
        PRESENT + "self_values": torch.stack(values_out),
    }


def _stacked(blocks: nn.ModuleList, tokens: Tensor) -> tuple[Tensor, Tensor]:
    keys, values = zip(*(cross_memory(block, tokens) for block in blocks))
    return torch.stack(keys), torch.stack(values)


class EncoderGraph(nn.Module):
    """``(pixels, source) -> {logits, memory, cache}`` (``source`` alone for a text-only model): the
    exported ``encoder`` graph (see the module docstring). Its ``metadata`` holds what the predictor
    decodes by."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.image = model.visual is not None
        self.metadata = decoding_metadata(model.special_tokens, model.max_target_tokens, image=self.image)

    def _encode(self, pixels: Tensor | None, source: Tensor) -> dict[str, Tensor]:
        decoder = self.model.decoder
        source_tokens, source_real = self.model.encode_source(source)
        memory = dict(zip(TEXT_CROSS_NAMES, _stacked(decoder.text_cross, source_tokens)))
        memory[SOURCE_MASK] = source_real
        if self.image:
            memory.update(zip(IMAGE_CROSS_NAMES, _stacked(decoder.image_cross, self.model.encode_image(pixels))))
        start = torch.full_like(source[:, :1], self.model.special_tokens.start)  # (B, 1); len() would fix B
        first = decode(self.model, start, memory, None)
        return {"logits": first["logits"], **memory, **{name: first[PRESENT + name] for name in CACHE_NAMES}}

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        pixels, source = inputs if self.image else (None, inputs[0])
        return self._encode(pixels, source)


class DecoderGraph(nn.Module):
    """``(tokens, memory..., self_keys, self_values) -> {logits, present cache}``: the exported
    ``decoder`` graph (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.image = model.visual is not None

    def forward(self, tokens: Tensor, *inputs: Tensor) -> dict[str, Tensor]:
        names = [*TEXT_CROSS_NAMES, SOURCE_MASK, *(IMAGE_CROSS_NAMES if self.image else ())]
        memory = dict(zip(names, inputs[: len(names)]))
        return decode(self.model, tokens, memory, tuple(inputs[len(names) :]))
