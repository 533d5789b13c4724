"""Student initialisation from the teacher: layers, channels and the four head strategies."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TASK, tiny_model_config, tiny_model_dict, tiny_params_dict

from amad.config.params import parse_params
from amad.errors import ConfigError
from amad.student_init.head_importance import head_importance, map_similarity
from amad.student_init.inherit import head_groups, head_matrices, inherit
from amad.tasks.vqa.model import VQAModel

NUM_ANSWERS = 7


def model(width=32, heads=4, seed=0):
    torch.manual_seed(seed)
    return VQAModel(tiny_model_config(width=width, heads=heads), NUM_ANSWERS).eval()


def inputs(batch=3):
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3, 24, 24, generator=generator)
    tokens = model().preprocess.tokenize(["what color is the circle?", "is there a red square?", "how many"][:batch])
    return pixels, tokens


@pytest.mark.parametrize("strategy", ["first", "merge", "concat"])
def test_with_equal_shapes_inheritance_reproduces_the_teacher(strategy):
    teacher, student = model(seed=0), model(seed=1)
    counts = inherit(teacher, student, TASK.module_groups, "uniform", strategy)
    assert counts["inherited"] == len(student.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(student(*inputs()), teacher(*inputs()), atol=1e-5, rtol=0)


def test_first_keeps_heads_and_channels_in_order_for_a_narrower_student():
    teacher, student = model(width=32, heads=4), model(width=16, heads=2, seed=1)  # head dim 8 on both
    inherit(teacher, student, TASK.module_groups, "uniform", "first")
    t_qkv, s_qkv = teacher.vision.blocks[1].attn.qkv.weight, student.vision.blocks[1].attn.qkv.weight
    for part in range(3):  # q, k, v: teacher heads 0 and 1 (rows 0..15 of each part), residual channels 0..15
        assert torch.equal(s_qkv[part * 16 : (part + 1) * 16], t_qkv[part * 32 : part * 32 + 16, :16])
    # the one-layer text tower takes the teacher's last layer (uniform mapping)
    t_text, s_text = teacher.text.transformer.resblocks, student.text.transformer.resblocks
    assert len(s_text) == 1 and torch.equal(s_text[0].mlp.c_fc.weight, t_text[-1].mlp.c_fc.weight[:64, :16])
    assert torch.equal(student.head.weight, teacher.head.weight[:, :16])


def test_concat_keeps_every_weight_and_attends_with_the_groups_summed_scores():
    teacher, student = model(width=32, heads=4), model(width=32, heads=2, seed=1)
    similarity = {
        "vision.blocks.0.attn": torch.tensor([[1, 0.1, 0.9, 0], [0.1, 1, 0, 0.8], [0.9, 0, 1, 0], [0, 0.8, 0, 1.0]])
    }
    inherit(teacher, student, TASK.module_groups, "uniform", "concat", similarity)
    t_attn, s_attn = teacher.vision.blocks[0].attn, student.vision.blocks[0].attn
    t_q, t_k, t_v = t_attn.qkv.weight.split(32)
    s_q, s_k, s_v = s_attn.qkv.weight.split(32)
    for t, s in ((t_k, s_k), (t_v, s_v), (t_attn.proj.weight.t(), s_attn.proj.weight.t())):
        assert torch.equal(torch.sort(t.flatten()).values, torch.sort(s.flatten()).values)  # a permutation
    assert torch.allclose(torch.sort(s_q.flatten()).values, torch.sort(t_q.flatten()).values * math.sqrt(2))
    x = torch.randn(5, 32)
    head = lambda w, h, d: (x @ w.t())[:, h * d : (h + 1) * d]  # noqa: E731
    # student head 0 = teacher heads 0 and 2 (the similar pair): its scores are their summed scores
    student_scores = head(s_q, 0, 16) @ head(s_k, 0, 16).t() / math.sqrt(16)
    teacher_scores = sum(head(t_q, h, 8) @ head(t_k, h, 8).t() / math.sqrt(8) for h in (0, 2))
    torch.testing.assert_close(student_scores, teacher_scores, atol=1e-5, rtol=0)


def test_merge_averages_grouped_qkv_and_sums_the_output_slices():
    query, key_value, output = head_matrices("merge", 4, 2, 2, 2, torch.eye(4))  # identity similarity: 0+1, 2+3
    expected = torch.tensor([[0.5, 0, 0.5, 0, 0, 0, 0, 0], [0, 0.5, 0, 0.5, 0, 0, 0, 0]], dtype=torch.float64)
    assert torch.equal(query[:2], expected) and torch.equal(key_value, query)
    assert torch.equal(output[:2], expected * 2)
    assert head_groups(torch.tensor([[1, 0, 0.9, 0], [0, 1, 0, 0], [0.9, 0, 1, 0], [0, 0, 0, 1.0]]), 2) == [
        [0, 2],
        [1, 3],
    ]


def test_importance_equals_a_loop_over_explicit_head_masks():
    teacher = model()
    paths = [f"vision.blocks.{i}.attn" for i in range(2)]
    batches = [{"pixels": p[None].repeat(2, 1, 1, 1), "tokens": t[None].repeat(2, 1)} for p, t in zip(*inputs())]
    targets = torch.arange(NUM_ANSWERS)[:2]

    def loss(m, batch):
        return torch.nn.functional.cross_entropy(m(batch["pixels"], batch["tokens"])["logits"], targets)

    scores = head_importance(teacher, paths, batches, loss)
    assert all(p.grad is None and p.requires_grad for p in teacher.parameters()), "the teacher is left as it was"
    # reference: a mask xi_h on each head's output (the output projection's input), |d loss / d xi| per batch
    reference = {path: torch.zeros(4, dtype=torch.float64) for path in paths}
    for batch in batches:
        masks = {path: torch.ones(4, requires_grad=True) for path in paths}
        handles = [
            teacher.get_submodule(path).proj.register_forward_pre_hook(
                lambda _m, args, mask=masks[path]: (args[0] * mask.repeat_interleave(8),)
            )
            for path in paths
        ]
        loss(teacher, batch).backward()
        for handle in handles:
            handle.remove()
        for path in paths:
            reference[path] += masks[path].grad.double().abs()
    for path in paths:
        torch.testing.assert_close(scores[path], reference[path] / reference[path].norm(), atol=1e-6, rtol=1e-5)


def test_map_similarity_is_one_on_the_diagonal_and_symmetric():
    similarity = map_similarity(model(), ["vision.blocks.0.attn"], [inputs()])["vision.blocks.0.attn"]
    assert similarity.shape == (4, 4) and torch.allclose(similarity.diagonal(), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(similarity, similarity.t())


@pytest.mark.parametrize("strategy", ["first", "importance", "merge"])
def test_a_student_head_wider_than_a_teacher_head_attends_with_its_teacher_heads_summed_scores(strategy):
    # teacher: 4 heads of 8 over width 32; student: 1 head of 16 over width 16 -> 2 teacher heads side by side
    teacher, student = model(width=32, heads=4), model(width=16, heads=1, seed=1)
    paths = [path for group in TASK.module_groups(teacher).values() for path in group]
    importance = torch.tensor([0.1, 0.7, 0.2, 0.6], dtype=torch.float64)  # keeps heads 1 and 3
    scores = {path: importance if strategy == "importance" else torch.eye(4) for path in paths}  # merge: 0+1, 2+3
    inherit(teacher, student, TASK.module_groups, "uniform", strategy, scores)
    t_q, t_k, _ = teacher.vision.blocks[0].attn.qkv.weight.split(32)
    s_q, s_k, _ = student.vision.blocks[0].attn.qkv.weight.split(16)
    x = torch.randn(5, 16)  # the student's residual stream = the teacher's first 16 channels
    t_x = torch.cat([x, torch.zeros(5, 16)], dim=1)

    def teacher_scores(heads, query_weight=t_q, key_weight=t_k):
        q, k = t_x @ query_weight.t(), t_x @ key_weight.t()
        return sum(q[:, h * 8 : (h + 1) * 8] @ k[:, h * 8 : (h + 1) * 8].t() / math.sqrt(8) for h in heads)

    student_scores = (x @ s_q.t()) @ (x @ s_k.t()).t() / math.sqrt(16)
    if strategy == "merge":  # each slot is the mean of a group's q and of its k
        mean = lambda w: (w.view(4, 8, 32)[0::2] + w.view(4, 8, 32)[1::2]).reshape(16, 32) / 2  # noqa: E731
        padded = lambda w: torch.cat([w, torch.zeros(16, 32)])  # noqa: E731
        expected = teacher_scores([0, 1], padded(mean(t_q)), padded(mean(t_k)))
    else:
        expected = teacher_scores([0, 1] if strategy == "first" else [1, 3])
    torch.testing.assert_close(student_scores, expected, atol=1e-5, rtol=0)


def test_shapes_the_head_strategy_cannot_fill_fail_in_validation_naming_the_key():
    raw = tiny_params_dict(students={"h2": tiny_model_dict(width=24, heads=2)})  # head dim 12, the teacher's is 8
    raw["distill"]["init"] = {"strategy": "inherit", "heads": "first", "batches": 2}
    with pytest.raises(
        ConfigError, match=r"students\.h2\.vision\.heads: inheriting .* whole teacher heads of dimension 8"
    ):
        parse_params(raw)
    raw["students"]["h2"] = tiny_model_dict(width=16, heads=1)  # one head of 16: two teacher heads side by side
    for heads in ("first", "importance", "merge"):
        raw["distill"]["init"]["heads"] = heads
        parse_params(raw)
    raw["distill"]["init"]["heads"] = "concat"
    with pytest.raises(ConfigError, match=r"students\.h2\.vision\.width: distill\.init\.heads concat keeps every"):
        parse_params(raw)
    raw["students"]["h2"] = tiny_model_dict(width=24, heads=3)  # 3 slots cannot pool 4 heads evenly
    raw["distill"]["init"]["heads"] = "merge"
    with pytest.raises(ConfigError, match=r"students\.h2\.vision\.heads: distill\.init\.heads merge pools"):
        parse_params(raw)
    raw["students"]["h2"] = tiny_model_dict(width=32, heads=2)  # same width, fewer wider heads
    for heads in ("first", "concat"):
        raw["distill"]["init"]["heads"] = heads
        parse_params(raw)
    raw["distill"]["init"]["heads"] = "sideways"
    with pytest.raises(ConfigError, match=r"distill\.init\.heads"):
        parse_params(raw)
