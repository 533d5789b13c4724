"""Capture attention probabilities (and per-head q, k, v) from unmodified models.

Supported modules:

* timm ``Attention`` (the ViT block attention). timm fuses attention through
  ``scaled_dot_product_attention``, which never materialises the map, so while a capture is
  active fusion is switched off *on the captured modules only*, and the probabilities are read
  where the module itself computes them (the input of ``attn_drop``). No work is done twice and
  the map is exactly the one the module used.
* ``torch.nn.MultiheadAttention`` (open_clip ``TextTransformer`` / ``MultimodalTransformer``
  self- and cross-attention, and any plain use): calls are switched to
  ``need_weights=True, average_attn_weights=False`` and the per-head weights are recorded; the
  caller still receives what it asked for.
* Hugging Face BERT-style self-attention (``BertSelfAttention`` and the modules built like it:
  ``query`` / ``key`` / ``value`` projections, ``attention_head_size``, ``scaling``; e.g. the
  MiniLM text tower). Whatever attention kernel the model was loaded with (SDPA never returns
  the map; eager returns it after dropout), the probabilities are recomputed from the module's
  own projected queries and keys and its attention mask, exactly as its eager path computes
  them before dropout, so gradients reach the queries and keys.

With ``hidden=True`` the output of the block that holds each captured attention module (its
parent module: the residual stream after that layer) is recorded too, batch first. With
``maps=False`` (hidden states only) timm keeps its fused attention and ``nn.MultiheadAttention``
calls are left as they are.

Layers are chosen by module path or ``fnmatch`` pattern (``"visual.blocks.*.attn"``)::

    with AttentionCapture(model, ["vision.blocks.*.attn"], qkv=True) as capture:
        logits = model(images, tokens)
    capture.records["vision.blocks.0.attn"].probs  # (B, H, q, k)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (TimmAttention, nn.MultiheadAttention)
_HF_ATTRIBUTES = ("query", "key", "value", "attention_head_size", "scaling")


def is_hf_self_attention(module: nn.Module) -> bool:
    """A Hugging Face BERT-style self-attention module (see the module docstring)."""
    return all(hasattr(module, a) for a in _HF_ATTRIBUTES) and isinstance(module.query, nn.Linear)


def is_supported(module: nn.Module) -> bool:
    return isinstance(module, SUPPORTED_TYPES) or is_hf_self_attention(module)


_MHA_POSITIONAL = (
    "query",
    "key",
    "value",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "average_attn_weights",
    "is_causal",
)


@dataclass
class AttentionRecord:
    """What one attention module computed in the last forward pass.

    Attributes:
        probs: attention probabilities ``[B, H, q, k]`` (rows sum to 1, masked keys are 0).
        q: per-head queries ``[B, H, q, d]`` (only with ``qkv=True``).
        k: per-head keys ``[B, H, k, d]``.
        v: per-head values ``[B, H, k, d]``.
        hidden: output of the block holding the module ``[B, q, D]`` (only with ``hidden=True``).
    """

    probs: Tensor | None = None
    q: Tensor | None = None
    k: Tensor | None = None
    v: Tensor | None = None
    hidden: Tensor | None = None


def attention_module_names(model: nn.Module) -> list[str]:
    """Paths of every attention module in ``model`` that can be captured."""
    return [name for name, module in model.named_modules() if is_supported(module)]


def resolve_attention_modules(model: nn.Module, patterns: list[str] | str) -> dict[str, nn.Module]:
    """Map module-path patterns to the supported attention modules they select.

    Raises:
        ValueError: a pattern selects nothing, or names a module that is not a supported attention
            module (the message lists what can be captured).
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    modules = dict(model.named_modules())
    supported = attention_module_names(model)
    selected: dict[str, nn.Module] = {}
    for pattern in patterns:
        if pattern in modules and pattern not in supported:
            hint = f"; did you mean '{pattern}.attn'?" if f"{pattern}.attn" in supported else ""
            raise ValueError(
                f"module '{pattern}' is a {type(modules[pattern]).__name__}, not a supported attention "
                f"module (timm Attention, nn.MultiheadAttention or Hugging Face BERT-style self-attention){hint}"
            )
        matches = [name for name in supported if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            listed = ", ".join(supported[:8]) + (" ..." if len(supported) > 8 else "")
            raise ValueError(
                f"attention pattern '{pattern}' matches no attention module; capturable modules: {listed or 'none'}"
            )
        selected.update((name, modules[name]) for name in matches)
    return selected


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``[B, L, H*d]`` -> ``[B, H, L, d]``."""
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


class AttentionCapture:
    """Context manager that records attention from selected modules; removes its hooks on exit.

    Args:
        model: any module containing timm ``Attention`` or ``nn.MultiheadAttention`` modules.
        patterns: module paths or ``fnmatch`` patterns selecting the modules to capture.
        maps: record the attention probabilities.
        qkv: also record per-head q, k, v (for relation distillation).
        hidden: also record the output of the block holding each module (hidden-state distillation).
        detach: record tensors detached from autograd (use for a frozen teacher). Without it the
            student's maps carry gradients to its parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        patterns: list[str] | str,
        *,
        maps: bool = True,
        qkv: bool = False,
        hidden: bool = False,
        detach: bool = False,
    ) -> None:
        self.modules = resolve_attention_modules(model, patterns)
        self.blocks = dict(model.named_modules()) if hidden else {}
        self.maps = maps
        self.qkv = qkv
        self.hidden = hidden
        self.detach = detach
        self.records: dict[str, AttentionRecord] = {}
        self._handles: list[RemovableHandle] = []
        self._saved_fused: dict[str, bool] = {}

    def __enter__(self) -> AttentionCapture:
        try:
            for name, module in self.modules.items():
                if isinstance(module, TimmAttention):
                    self._hook_timm(name, module)
                elif isinstance(module, nn.MultiheadAttention):
                    self._hook_multihead(name, module)
                else:
                    self._hook_hf(name, module)
                if self.hidden:
                    self._hook_block_output(name, module)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._remove()

    def clear(self) -> None:
        """Forget the recorded tensors (e.g. between training steps, to free memory early)."""
        self.records.clear()

    def probs(self, name: str) -> Tensor:
        """The attention probabilities ``[B, H, q, k]`` recorded for module ``name``."""
        record = self.records.get(name)
        if record is None or record.probs is None:
            raise KeyError(f"no attention recorded for '{name}': was the module run inside the capture?")
        return record.probs

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name, fused in self._saved_fused.items():
            self.modules[name].fused_attn = fused
        self._saved_fused.clear()

    def _keep(self, tensor: Tensor) -> Tensor:
        return tensor.detach() if self.detach else tensor

    def _record(self, name: str) -> AttentionRecord:
        return self.records.setdefault(name, AttentionRecord())

    def _hook_hf(self, name: str, module: nn.Module) -> None:
        projected: dict[str, Tensor] = {}
        mask: list[Tensor | None] = [None]

        def keep_projection(field: str):
            def hook(_linear: nn.Module, _inputs: Any, output: Tensor) -> None:
                projected[field] = _split_heads(output, output.shape[-1] // module.attention_head_size)

            return hook

        def keep_mask(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            mask[0] = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

        def record(_module: nn.Module, _args: Any, _output: Any) -> None:
            q, k = projected["q"], projected["k"]  # (B, H, L, d)
            scores = (q @ k.transpose(-2, -1)) * module.scaling  # (B, H, Lq, Lk)
            attention_mask = mask[0]
            if attention_mask is not None:
                if attention_mask.dtype == torch.bool:
                    scores = scores.masked_fill(~attention_mask, float("-inf"))
                else:
                    scores = scores + attention_mask
            entry = self._record(name)
            if self.maps:
                entry.probs = self._keep(torch.softmax(scores, dim=-1))
            if self.qkv:
                entry.q, entry.k, entry.v = (self._keep(projected[f]) for f in ("q", "k", "v"))
            projected.clear()

        if not (self.maps or self.qkv):
            return
        for field, linear in (("q", module.query), ("k", module.key), ("v", module.value)):
            self._handles.append(linear.register_forward_hook(keep_projection(field)))
        self._handles.append(module.register_forward_pre_hook(keep_mask, with_kwargs=True))
        self._handles.append(module.register_forward_hook(record))

    def _block_of(self, name: str, module: nn.Module) -> str:
        """Path of the block whose output is the hidden state after ``module``'s layer."""
        parent = name.rpartition(".")[0]
        if is_hf_self_attention(module):  # layer.i.attention.self -> layer.i
            parent = parent.rpartition(".")[0]
        return parent

    def _hook_block_output(self, name: str, module: nn.Module) -> None:
        parent = self._block_of(name, module)
        if not parent:
            raise ValueError(f"hidden states need the block that holds '{name}'; it is the model itself")
        sequence_first = isinstance(module, nn.MultiheadAttention) and not module.batch_first

        def record_hidden(_block: nn.Module, _inputs: Any, output: Tensor) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            self._record(name).hidden = self._keep(hidden.transpose(0, 1) if sequence_first else hidden)  # (B, L, D)

        self._handles.append(self.blocks[parent].register_forward_hook(record_hidden))

    def _hook_timm(self, name: str, module: TimmAttention) -> None:
        if self.maps:
            self._saved_fused[name] = module.fused_attn
            module.fused_attn = False  # materialise the map, on this module only

            def record_probs(_dropout: nn.Module, inputs: tuple[Tensor, ...]) -> None:
                self._record(name).probs = self._keep(inputs[0])  # (B, H, N, N), before dropout

            self._handles.append(module.attn_drop.register_forward_pre_hook(record_probs))
        if not self.qkv:
            return

        def record_qkv(_linear: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
            batch, tokens, _ = output.shape
            qkv = output.reshape(batch, tokens, 3, module.num_heads, module.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d)
            record = self._record(name)
            record.q, record.k, record.v = self._keep(module.q_norm(q)), self._keep(module.k_norm(k)), self._keep(v)

        self._handles.append(module.qkv.register_forward_hook(record_qkv))

    def _hook_multihead(self, name: str, module: nn.MultiheadAttention) -> None:
        if not (self.maps or self.qkv):
            return  # hidden states only: the call stays as it was
        requested: list[tuple[bool, bool]] = []  # what each in-flight call asked for

        def ask_for_weights(
            _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            kwargs = {**dict(zip(_MHA_POSITIONAL, args)), **kwargs}
            args = (kwargs.pop("query"), kwargs.pop("key"), kwargs.pop("value"))
            requested.append((kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True)))
            kwargs["need_weights"] = True
            kwargs["average_attn_weights"] = False
            if self.qkv:
                self._record_multihead_qkv(name, module, *args)
            return args, kwargs

        def record_weights(
            _module: nn.Module, _args: Any, _kwargs: Any, output: tuple[Tensor, Tensor]
        ) -> tuple[Tensor, Tensor | None]:
            need_weights, average = requested.pop()
            attn_output, weights = output  # weights: (B, H, q, k)
            self._record(name).probs = self._keep(weights)
            if not need_weights:
                return attn_output, None
            return attn_output, weights.mean(1) if average else weights

        self._handles.append(module.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
        self._handles.append(module.register_forward_hook(record_weights, with_kwargs=True))

    def _record_multihead_qkv(
        self, name: str, module: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor
    ) -> None:
        if not module.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (B, L, E)
        if module._qkv_same_embed_dim:
            weights = module.in_proj_weight.chunk(3)
        else:
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        biases = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None,) * 3
        projected = [
            _split_heads(F.linear(x, w, b), module.num_heads)  # (B, H, L, d)
            for x, w, b in zip((query, key, value), weights, biases)
        ]
        record = self._record(name)
        record.q, record.k, record.v = (self._keep(t) for t in projected)


def capture_attention(
    model: nn.Module,
    patterns: list[str] | str,
    *,
    maps: bool = True,
    qkv: bool = False,
    hidden: bool = False,
    detach: bool = False,
) -> AttentionCapture:
    """Shorthand for :class:`AttentionCapture` (use as ``with capture_attention(...) as capture``)."""
    return AttentionCapture(model, patterns, maps=maps, qkv=qkv, hidden=hidden, detach=detach)
