"""Student initialisation from the teacher (``distill.init.strategy: inherit``).

A student inherits what its shape allows:

* **layers** by the layer mapping (``distill.attention.layer_mapping``, applied to every attention
  group): student block ``s`` takes the weights of its teacher block; student blocks the mapping
  leaves unpaired keep their random initialisation;
* **width** by channel selection: the first ``k`` channels of every axis that is narrower in the
  student (the residual stream, MLP hidden units, embeddings), the same channels everywhere;
* **heads** by ``distill.init.heads``, through one matrix per projection: each student attention
  module's query rows are ``M_q @ teacher rows``, its key / value rows ``M_kv @ teacher rows`` and
  its output projection's columns ``teacher columns @ O^T``, where (for student heads as wide as
  the teacher's; see below for wider ones)

  - ``first``: ``M_q = M_kv = O`` select teacher heads ``0..Hs-1`` (TinyCLIP's manual inheritance);
  - ``importance``: ``M_q = M_kv = O`` select the ``Hs`` most important heads (Michel et al. 2019;
    see :mod:`amad.student_init.head_importance`), in their teacher order;
  - ``merge``: the teacher heads form ``Hs`` groups of similar heads (the cosine of their attention
    maps, the similarity AMAD aligns with); ``M_q = M_kv`` mean-pool each group's q / k / v, ``O``
    sums the group's output-projection slices (the conversion GQA's authors found best);
  - ``concat``: same width, fewer wider heads: ``M_kv = O`` reorder the heads so each group is
    contiguous, ``M_q`` also scales the queries by ``sqrt(Ht / Hs)`` so that each student head
    attends with the sum of its group's teacher scores; every teacher weight is kept.

  A student head may be ``g`` teacher heads wide (``g`` = student head dimension / teacher head
  dimension, e.g. 2 heads of 32 from heads of 16): it then holds ``g`` kept (or merged) teacher
  heads side by side, its queries scaled by ``sqrt(g)`` so that it attends with the sum of their
  scores, as ``concat`` does. ``first`` / ``importance`` keep ``Hs x g`` heads, ``merge`` pools the
  teacher heads into ``Hs x g`` groups, ``concat`` needs ``Hs x g = Ht`` (the teacher's width).
  :func:`amad.student_init.config.check_init` refuses other shapes before any work, naming the key.

Everything else (norms, embeddings, task heads, projections) is copied by name, narrowed to the
student's shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from amad.distill.capture import is_hf_self_attention
from amad.distill.layer_mapping import map_layers


# -- where the weights live ----------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionWeights:
    """Parameter names of one attention module: q / k / v (``stacked``: one ``[3A, R]`` tensor) and
    the output projection."""

    qkv: tuple[str, ...]  # weight (and bias) names; stacked, or query, key, value in turn
    stacked: bool
    output: tuple[str, ...]  # output projection weight (and bias)
    heads: int


def attention_weights(model: nn.Module, path: str) -> AttentionWeights:
    """The parameter names of the attention module at ``path`` (timm, ``nn.MultiheadAttention``, BERT)."""
    module = model.get_submodule(path)
    names = {name for name, _ in model.named_parameters()}

    def present(*candidates: str) -> tuple[str, ...]:
        return tuple(c for c in candidates if c in names)

    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim:
            qkv = present(*(f"{path}.{p}_proj_weight" for p in "qkv"))
            raise NotImplementedError(f"{path}: separate q / k / v projections ({qkv}) are not inherited yet")
        qkv = present(f"{path}.in_proj_weight", f"{path}.in_proj_bias")
        output = present(f"{path}.out_proj.weight", f"{path}.out_proj.bias")
        return AttentionWeights(qkv, True, output, module.num_heads)
    if is_hf_self_attention(module):
        parent = path.rsplit(".", 1)[0]
        qkv = present(*(f"{path}.{p}.{t}" for p in ("query", "key", "value") for t in ("weight", "bias")))
        output = present(f"{parent}.output.dense.weight", f"{parent}.output.dense.bias")
        return AttentionWeights(qkv, False, output, module.num_attention_heads)
    qkv = present(f"{path}.qkv.weight", f"{path}.qkv.bias")  # timm Attention
    output = present(f"{path}.proj.weight", f"{path}.proj.bias")
    return AttentionWeights(qkv, True, output, module.num_heads)


def block_of(path: str) -> str:
    """The block holding an attention module: its path up to the last layer index
    (``vision.blocks.3.attn`` -> ``vision.blocks.3``)."""
    match = re.match(r"(.*\.\d+)(\.|$)", path)
    if match is None:
        raise ValueError(f"{path}: no layer index in the attention module's path")
    return match.group(1)


# -- head matrices ---------------------------------------------------------------------------------
def head_groups(similarity: Tensor, groups: int) -> list[list[int]]:
    """``groups`` equal groups of heads, greedily: the first unassigned head and its most similar
    unassigned heads (``similarity [H, H]``)."""
    heads = similarity.shape[0]
    size = heads // groups
    free = list(range(heads))
    result = []
    while free:
        seed = free.pop(0)
        ranked = sorted(free, key=lambda h: -float(similarity[seed, h]))[: size - 1]
        group = sorted([seed, *ranked])
        free = [h for h in free if h not in group]
        result.append(group)
    return result


def head_matrices(
    strategy: str, teacher_heads: int, student_heads: int, head_dim: int, student_head_dim: int, scores: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(M_q, M_kv, O)``, each ``[student channels, teacher channels]`` (float64).

    A student head of ``g = student_head_dim / head_dim`` teacher head widths holds ``g`` teacher
    heads (or merged groups) side by side, its queries scaled by ``sqrt(g)`` so that it attends with
    the sum of their scores; ``Hs x g`` slots are filled. ``scores``: importance ``[Ht]``
    (``importance``) or map similarity ``[Ht, Ht]`` (``merge``, ``concat``; None: consecutive groups).
    """
    channels = teacher_heads * head_dim
    per_head = student_head_dim // head_dim
    slots = student_heads * per_head
    query_scale = math.sqrt(per_head)

    def head_block(head: int) -> slice:
        return slice(head * head_dim, (head + 1) * head_dim)

    def placed(order: list[list[int]], weight: float) -> Tensor:
        """Slot ``i`` holds ``weight x`` the sum of the teacher heads ``order[i]``."""
        matrix = torch.zeros(slots * head_dim, channels, dtype=torch.float64)
        for slot, heads in enumerate(order):
            for head in heads:
                matrix[slot * head_dim : (slot + 1) * head_dim, head_block(head)] = weight * torch.eye(head_dim)
        return matrix

    if strategy in ("first", "importance"):
        if strategy == "first":
            kept = list(range(slots))
        else:
            kept = sorted(torch.argsort(scores, descending=True, stable=True)[:slots].tolist())
        select = placed([[head] for head in kept], 1.0)
        return select * query_scale, select, select
    similarity = scores if scores is not None else torch.eye(teacher_heads)
    if strategy == "merge":
        groups = head_groups(similarity, slots)
        mean = placed(groups, 1.0 / len(groups[0]))
        return mean * query_scale, mean, placed(groups, 1.0)
    if strategy == "concat":
        order = [[head] for group in head_groups(similarity, student_heads) for head in group]
        permute = placed(order, 1.0)
        return permute * query_scale, permute, permute
    raise ValueError(f"unknown head strategy {strategy!r}")


# -- copying ------------------------------------------------------------------------------------------
def _narrow(tensor: Tensor, shape: torch.Size, name: str) -> Tensor:
    """The first ``shape[i]`` entries of every axis of ``tensor``."""
    if tensor.dim() != len(shape) or any(s > t for s, t in zip(shape, tensor.shape)):
        raise ValueError(
            f"cannot inherit {name}: the student's shape {tuple(shape)} does not fit in {tuple(tensor.shape)}"
        )
    return tensor[tuple(slice(0, s) for s in shape)]


def _inherit_attention(
    teacher_params: dict[str, Tensor],
    student_params: dict[str, Tensor],
    teacher: AttentionWeights,
    student: AttentionWeights,
    matrices: tuple[Tensor, Tensor, Tensor],
) -> dict[str, Tensor]:
    """The student's q / k / v and output-projection tensors from the teacher's."""
    m_q, m_kv, o = matrices
    new = {}
    if teacher.stacked:
        weight_t = teacher_params[teacher.qkv[0]].double()
        channels = weight_t.shape[0] // 3
        parts_w = weight_t.split(channels)
        parts_b = teacher_params[teacher.qkv[1]].double().split(channels) if len(teacher.qkv) > 1 else None
        residual = student_params[student.qkv[0]].shape[1]
        rows = [m @ w[:, :residual] for m, w in zip((m_q, m_kv, m_kv), parts_w)]
        new[student.qkv[0]] = torch.cat(rows)
        if parts_b is not None:
            new[student.qkv[1]] = torch.cat([m @ b for m, b in zip((m_q, m_kv, m_kv), parts_b)])
    else:
        names_t, names_s = teacher.qkv, student.qkv
        per = len(names_t) // 3  # weight (and bias) per projection
        for index, matrix in enumerate((m_q, m_kv, m_kv)):
            for offset in range(per):
                t_name, s_name = names_t[index * per + offset], names_s[index * per + offset]
                tensor = teacher_params[t_name].double()
                if tensor.dim() == 2:
                    new[s_name] = matrix @ tensor[:, : student_params[s_name].shape[1]]
                else:
                    new[s_name] = matrix @ tensor
    out_weight = teacher_params[teacher.output[0]].double()
    residual = student_params[student.output[0]].shape[0]
    new[student.output[0]] = out_weight[:residual] @ o.t()
    if len(teacher.output) > 1:
        new[student.output[1]] = teacher_params[teacher.output[1]].double()[:residual]
    return new


def inherit(
    teacher: nn.Module,
    student: nn.Module,
    module_groups: Callable[[nn.Module], dict[str, list[str]]],
    layer_mapping: Any,
    head_strategy: str,
    head_scores: dict[str, Tensor] | None = None,
) -> dict[str, int]:
    """Copy the teacher's weights into ``student`` (in place) as the module docstring describes.

    Args:
        module_groups: the task's attention module paths per group.
        layer_mapping: ``distill.attention.layer_mapping``.
        head_strategy: one of :data:`amad.student_init.config.HEAD_STRATEGIES`.
        head_scores: per teacher attention module, importance ``[Ht]`` or map similarity ``[Ht, Ht]``.

    Returns counts: ``inherited`` and ``random`` (student tensors left at their initialisation).
    """
    teacher_groups, student_groups = module_groups(teacher), module_groups(student)
    blocks: dict[str, str] = {}  # student block -> teacher block
    attention_pairs = []
    for group, student_modules in student_groups.items():
        teacher_modules = teacher_groups[group]
        for t, s in map_layers(len(teacher_modules), len(student_modules), layer_mapping):
            blocks[block_of(student_modules[s])] = block_of(teacher_modules[t])
            attention_pairs.append((teacher_modules[t], student_modules[s]))
    teacher_params = {name: tensor.detach().cpu() for name, tensor in teacher.state_dict().items()}  # any device
    student_params = dict(student.state_dict())
    new: dict[str, Tensor] = {}
    for t_path, s_path in attention_pairs:
        t_weights, s_weights = attention_weights(teacher, t_path), attention_weights(student, s_path)
        head_dim = teacher_params[t_weights.output[0]].shape[1] // t_weights.heads
        student_head_dim = student_params[s_weights.output[0]].shape[1] // s_weights.heads
        scores = None if head_scores is None else head_scores.get(t_path)
        matrices = head_matrices(head_strategy, t_weights.heads, s_weights.heads, head_dim, student_head_dim, scores)
        new.update(_inherit_attention(teacher_params, student_params, t_weights, s_weights, matrices))
    all_student_blocks = {block_of(p) for paths in student_groups.values() for p in paths}
    for name, tensor in student_params.items():
        if name in new:
            continue
        block = next((b for b in all_student_blocks if name.startswith(b + ".")), None)
        if block is not None:
            if block not in blocks:
                continue  # an unpaired student layer keeps its initialisation
            source = blocks[block] + name[len(block) :]
        else:
            source = name
        if source in teacher_params:
            new[name] = _narrow(teacher_params[source], tensor.shape, name)
    with torch.no_grad():
        for name, tensor in new.items():
            student_params[name].copy_(tensor.to(student_params[name].device, student_params[name].dtype))
    return {"inherited": len(new), "random": len(student_params) - len(new)}
