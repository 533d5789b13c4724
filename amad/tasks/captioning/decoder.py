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
from torch.nn import functional as F

from amad.tasks.captioning.predictor import CACHE_NAMES, PRESENT, decoding_metadata


def _heads(x: Tensor, heads: int) -> Tensor:
    """``[B, n, W]`` -> ``[B, H, n, W / H]``."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _projections(attention: nn.MultiheadAttention) -> tuple[tuple[Tensor, Tensor | None], ...]:
    """The query, key and value projections ``(weight, bias)`` of an ``nn.MultiheadAttention``."""
    weights = attention.in_proj_weight.chunk(3)
    biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    return tuple(zip(weights, biases))


def _attend(
    attention: nn.MultiheadAttention, queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None
) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` then the output projection: ``[B, H, s, d]`` queries -> ``[B, s, W]``."""
    scores = queries @ keys.transpose(-1, -2) * queries.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    mixed = scores.softmax(-1) @ values  # (B, H, s, d)
    batch, heads, steps, width = mixed.shape
    return attention.out_proj(mixed.transpose(1, 2).reshape(batch, steps, heads * width))


def _causal_step(
    block: nn.Module, x: Tensor, past_keys: Tensor | None, past_values: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """One open_clip ``ResidualAttentionBlock``'s causal self-attention on the newest tokens ``x
    [B, s, W]`` after ``t`` cached ones (``past_* [B, H, t, d]``): ``(x after the attention, keys,
    values of all t + s tokens)``. The block's MLP is left to the caller."""
    attention = block.attn
    heads = attention.num_heads
    (wq, bq), (wk, bk), (wv, bv) = _projections(attention)
    h = block.ln_1(x)
    keys, values = _heads(F.linear(h, wk, bk), heads), _heads(F.linear(h, wv, bv), heads)
    if past_keys is not None:
        keys, values = torch.cat([past_keys, keys], dim=2), torch.cat([past_values, values], dim=2)
    steps, total = x.shape[1], keys.shape[2]
    positions = torch.arange(total - steps, total, device=x.device)
    mask = torch.arange(total, device=x.device)[None, :] <= positions[:, None]  # (s, t + s): causal
    x = x + block.ls_1(_attend(attention, _heads(F.linear(h, wq, bq), heads), keys, values, mask))
    return x, keys, values


def _mlp(block: nn.Module, x: Tensor) -> Tensor:
    return x + block.ls_2(block.mlp(block.ln_2(x)))


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
        x, keys, values = _causal_step(block, x, *layer_cache(text_keys, text_values, layer))
        x = _mlp(block, x)
        present["text_keys"].append(keys)
        present["text_values"].append(values)
    last_layer = len(decoder.resblocks) - 1
    for layer, (block, cross) in enumerate(zip(decoder.resblocks, decoder.cross_attn)):
        x, keys, values = _causal_step(block, x, *layer_cache(self_keys, self_values, layer))
        x = _mlp(block, x)
        present["self_keys"].append(keys)
        present["self_values"].append(values)
        if layer == last_layer:  # from here on only the newest token's state is read
            x = x[:, -1:]
        attention = cross.attn
        (wq, bq), _, _ = _projections(attention)
        queries = _heads(F.linear(cross.ln_1(x), wq, bq), attention.num_heads)
        x = x + cross.ls_1(_attend(attention, queries, cross_keys[layer], cross_values[layer], None))
        x = _mlp(cross, x)
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
        special = model.special_tokens
        self.metadata = decoding_metadata(special.start, special.end, special.pad, model.max_caption_tokens)

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        _, image_tokens = self.model.encode_image_tokens(pixels)
        keys, values = [], []
        for block in self.model.text_decoder.cross_attn:
            attention = block.attn
            _, (wk, bk), (wv, bv) = _projections(attention)
            memory = block.ln_1_kv(image_tokens)
            keys.append(_heads(F.linear(memory, wk, bk), attention.num_heads))
            values.append(_heads(F.linear(memory, wv, bv), attention.num_heads))
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
