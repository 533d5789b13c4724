"""The attention arithmetic of a cached decoder step, on open_clip's blocks' own weights.

An open_clip ``ResidualAttentionBlock`` runs its ``nn.MultiheadAttention`` over the whole sequence;
a decoder step needs the newest tokens' queries against the keys and values of every token so far
(self-attention) or of a memory computed once (cross-attention). These functions compute exactly
what the block computes, from its projections, so a cached step and the teacher-forced ``forward``
agree (the captioning and translation tests check it). Shared by every generative task's graphs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[B, n, W]`` -> ``[B, H, n, W / H]``."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def projections(attention: nn.MultiheadAttention) -> tuple[tuple[Tensor, Tensor | None], ...]:
    """The query, key and value projections ``(weight, bias)`` of an ``nn.MultiheadAttention``."""
    weights = attention.in_proj_weight.chunk(3)
    biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    return tuple(zip(weights, biases))


def attend(
    attention: nn.MultiheadAttention, queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None
) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` then the output projection: ``[B, H, s, d]`` queries -> ``[B, s, W]``.
    ``mask``: bool, True where a query may read a key, broadcast against ``[B, H, s, k]``."""
    scores = queries @ keys.transpose(-1, -2) * queries.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    mixed = scores.softmax(-1) @ values  # (B, H, s, d)
    batch, heads, steps, width = mixed.shape
    return attention.out_proj(mixed.transpose(1, 2).reshape(batch, steps, heads * width))


def causal_step(
    block: nn.Module, x: Tensor, past_keys: Tensor | None, past_values: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """One open_clip ``ResidualAttentionBlock``'s causal self-attention on the newest tokens ``x
    [B, s, W]`` after ``t`` cached ones (``past_* [B, H, t, d]``): ``(x after the attention, keys,
    values of all t + s tokens)``. The block's MLP is left to the caller (:func:`mlp`)."""
    attention = block.attn
    heads = attention.num_heads
    (wq, bq), (wk, bk), (wv, bv) = projections(attention)
    h = block.ln_1(x)
    keys, values = split_heads(F.linear(h, wk, bk), heads), split_heads(F.linear(h, wv, bv), heads)
    if past_keys is not None:
        keys, values = torch.cat([past_keys, keys], dim=2), torch.cat([past_values, values], dim=2)
    steps, total = x.shape[1], keys.shape[2]
    positions = torch.arange(total - steps, total, device=x.device)
    mask = torch.arange(total, device=x.device)[None, :] <= positions[:, None]  # (s, t + s): causal
    x = x + block.ls_1(attend(attention, split_heads(F.linear(h, wq, bq), heads), keys, values, mask))
    return x, keys, values


def cross_memory(block: nn.Module, memory: Tensor) -> tuple[Tensor, Tensor]:
    """A cross-attention block's keys and values ``[B, H, n, d]`` of ``memory [B, n, W]`` (computed
    once per input, then read at every step)."""
    attention = block.attn
    _, (wk, bk), (wv, bv) = projections(attention)
    normed = block.ln_1_kv(memory)
    heads = attention.num_heads
    return split_heads(F.linear(normed, wk, bk), heads), split_heads(F.linear(normed, wv, bv), heads)


def cross_step(block: nn.Module, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None) -> Tensor:
    """A cross-attention block's attention of ``x [B, s, W]`` over cached memory keys and values
    (``mask`` bool ``[B, 1, 1, n]``: the memory positions that are real); the MLP left to the caller."""
    attention = block.attn
    (wq, bq), _, _ = projections(attention)
    queries = split_heads(F.linear(block.ln_1(x), wq, bq), attention.num_heads)
    return x + block.ls_1(attend(attention, queries, keys, values, mask))


def mlp(block: nn.Module, x: Tensor) -> Tensor:
    """The block's MLP with its residual."""
    return x + block.ls_2(block.mlp(block.ln_2(x)))
