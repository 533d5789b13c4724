"""Captioning with a key/value cache: a CoCa's two graphs, and the decoder state the decode loop steps.

A caption is one image encoding, then one decoder call per generated token. The two graphs (what is
exported and served) read a :class:`~amad.tasks.captioning.model.CaptioningModel`'s own weights:

* ``image`` (:class:`ImageGraph`): ``pixels [B, 3, H, W]`` -> the decoder's cross-attention keys and
  values, computed once per image: ``cross_keys`` / ``cross_values`` ``[Ld, B, Hd, N, d]`` (decoder
  layers, heads, image tokens, head width); and the first decoder step, on the start token:
  ``logits [B, V]`` of the caption's first token and the cache after the start token.
* ``decoder`` (:class:`DecoderGraph`): ``tokens [B, s]`` (the ``s`` newest tokens), the cross keys
  and values, and the cache of the ``t >= 1`` tokens before them: ``text_keys`` / ``text_values``
  ``[Lt, B, Ht, t, d]`` (the unimodal text tower's causal self-attention) and ``self_keys`` /
  ``self_values`` ``[Ld, B, Hd, t, d]`` (the decoder's causal self-attention) -> ``logits [B, V]`` of
  the token after the last one, and the cache of all ``t + s`` tokens under the same names with a
  ``present_`` prefix. Called with the whole prefix after the start token and the start token's
  cache, it recomputes every step: the uncached decoder is the same graph.

The text tower's appended class token (CoCa's contrastive embedding) comes after every caption token
and the causal mask hides it from them, so captioning never computes it. A test checks the cached
logits against the model's teacher-forced ``forward``.

:class:`~amad.tasks.captioning.predictor.CaptionDecoderState` drives either graph pair (torch modules
or ONNX Runtime sessions) for :func:`amad.generation.search.generate`, cached or not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from amad.generation.cached_attention import causal_step, cross_memory, cross_step, mlp
from amad.generation.decoder_state import PRESENT
from amad.generation.predictor import decoding_metadata
from amad.tasks.captioning.predictor import CACHE_NAMES


def decode(
    model: nn.Module, tokens: Tensor, cross_keys: Tensor, cross_values: Tensor, cache: tuple[Tensor, ...] | None
) -> dict[str, Tensor]:
    """The decoder step of the module docstring: ``logits [B, V]`` after ``tokens [B, s]`` and the
    cache of every token so far (``present_*``); ``cache`` None: no tokens before ``tokens``."""
    text, decoder = model.text, model.text_decoder
    text_keys, text_values, self_keys, self_values = cache if cache is not None else (None,) * 4
    past, steps = (text_keys.shape[3] if cache is not None else 0), tokens.shape[1]
    x = text.token_embedding(tokens) + text.positional_embedding[past : past + steps]
    present: dict[str, list[Tensor]] = {name: [] for name in CACHE_NAMES}

    def layer_cache(keys: Tensor | None, values: Tensor | None, layer: int) -> tuple[Tensor | None, Tensor | None]:
        return (None, None) if keys is None else (keys[layer], values[layer])

    for layer, block in enumerate(text.transformer.resblocks):
        x, keys, values = causal_step(block, x, *layer_cache(text_keys, text_values, layer))
        x = mlp(block, x)
        present["text_keys"].append(keys)
        present["text_values"].append(values)
    last_layer = len(decoder.resblocks) - 1
    for layer, (block, cross) in enumerate(zip(decoder.resblocks, decoder.cross_attn)):
        x, keys, values = causal_step(block, x, *layer_cache(self_keys, self_values, layer))
        x = mlp(block, x)
        present["self_keys"].append(keys)
        present["self_values"].append(values)
        if layer == last_layer:  # from here on only the newest token's state is read
            x = x[:, -1:]
        x = mlp(cross, cross_step(cross, x, cross_keys[layer], cross_values[layer]))
    logits = decoder.ln_final(x[:, -1]) @ decoder.text_projection
    return {"logits": logits, **{PRESENT + name: torch.stack(value) for name, value in present.items()}}


class ImageGraph(nn.Module):
    """``pixels -> {logits, cross keys / values, cache}``: the exported ``image`` graph. It encodes
    the image, computes the cross-attention keys and values once, and runs the first decoder step
    on the start token (the same for every caption): ``logits [B, V]`` of the first caption token and
    the cache after the start token (``text_keys``, ...; ``t = 1``). Its ``metadata`` holds what the
    predictor decodes by (the model's special tokens and longest caption)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.start_token = model.special_tokens.start
        self.metadata = decoding_metadata(model.special_tokens, model.max_caption_tokens)

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        _, image_tokens = self.model.encode_image_tokens(pixels)
        keys, values = zip(*(cross_memory(block, image_tokens) for block in self.model.text_decoder.cross_attn))
        cross = {"cross_keys": torch.stack(keys), "cross_values": torch.stack(values)}
        start = torch.full_like(pixels[:, :1, 0, 0], self.start_token, dtype=torch.long)  # (B, 1); len() would fix B
        first = decode(self.model, start, cross["cross_keys"], cross["cross_values"], None)
        return {"logits": first["logits"], **cross, **{name: first[PRESENT + name] for name in CACHE_NAMES}}


class DecoderGraph(nn.Module):
    """``(tokens, cross keys / values, cache) -> {logits, present cache}``: the exported ``decoder``
    graph (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        tokens: Tensor,
        cross_keys: Tensor,
        cross_values: Tensor,
        text_keys: Tensor,
        text_values: Tensor,
        self_keys: Tensor,
        self_values: Tensor,
    ) -> dict[str, Tensor]:
        return decode(self.model, tokens, cross_keys, cross_values, (text_keys, text_values, self_keys, self_values))
