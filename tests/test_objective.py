"""The distillation entry point, temperature schedules and layer mapping."""

import math

import pytest
import timm
import torch

from amad.attention import capture_attention
from amad.layer_mapping import map_layers, pair_modules
from amad.objective import METHODS, AmadSettings, DistillationObjective, ObjectiveConfig
from amad.temperature import AlignmentTemperature


def vit(heads, width, depth, seed):
    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=8,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        num_classes=3,
    )


def run_objective(config, *, teacher_heads=4, student_heads=2):
    teacher, student = vit(teacher_heads, 32, 4, 0).eval(), vit(student_heads, 16, 2, 1)
    pairs = pair_modules([f"blocks.{i}.attn" for i in range(4)], [f"blocks.{i}.attn" for i in range(2)])
    objective = DistillationObjective(config, pairs, map_sizes={s: 25 for _, s in pairs})
    images, targets = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    qkv = objective.needs_qkv
    with torch.no_grad(), capture_attention(teacher, objective.teacher_modules, qkv=qkv, detach=True) as t_cap:
        teacher_logits = teacher(images)
    with capture_attention(student, objective.student_modules, qkv=qkv) as s_cap:
        student_logits = student(images)
    output = objective(
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        targets=targets,
        teacher_capture=t_cap,
        student_capture=s_cap,
    )
    output.total.backward()
    return output, student, objective


@pytest.mark.parametrize("method", METHODS)
def test_total_is_the_weighted_sum_of_its_terms(method):
    config = ObjectiveConfig(method=method, task_weight=0.5, logit_weight=2.0, attention_weight=3.0)
    output, student, _ = run_objective(config)
    terms = output.terms
    expected = 0.5 * terms["task"] + 2.0 * terms.get("logit_kd", 0.0) + 3.0 * terms.get("attention", 0.0)
    assert output.total.item() == pytest.approx(expected, rel=1e-6)
    assert ("logit_kd" in terms) == (method != "none")
    assert ("attention" in terms) == (method in ("one2one", "minilm", "amad"))
    if method in ("one2one", "minilm", "amad"):
        assert {"layer/blocks.0.attn", "layer/blocks.1.attn"} <= set(terms)
        assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    if method == "amad":
        assert set(output.alignment) == {"blocks.0.attn", "blocks.1.attn"}
        weights = output.alignment["blocks.1.attn"]
        assert weights.shape == (4, 2)
        torch.testing.assert_close(weights.sum(-1), torch.ones(4))
        assert terms["temperature"] == 1.0


@pytest.mark.parametrize("variant", ["kl", "mse", "token", "projection"])
def test_amad_variants_and_learned_temperature(variant):
    settings = AmadSettings(variant=variant, temperature=0.5, temperature_schedule="learned")
    output, _, objective = run_objective(ObjectiveConfig(method="amad", amad=settings))
    assert math.isfinite(output.total.item())
    assert objective.temperature.log_temperature.grad is not None
    if variant == "projection":
        assert objective.projections["0"].linear.weight.grad is not None


def test_bad_config_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        ObjectiveConfig(method="distil")
    with pytest.raises(ValueError, match="at least one attention layer pair"):
        DistillationObjective(ObjectiveConfig(method="amad"), [])
    with pytest.raises(ValueError, match="needs map sizes"):
        DistillationObjective(ObjectiveConfig(method="amad", amad=AmadSettings(variant="projection")), [("a", "b")])


def test_temperature_schedules():
    linear = AlignmentTemperature(1.0, schedule="linear", final=0.2)
    cosine = AlignmentTemperature(1.0, schedule="cosine", final=0.2)
    for fraction, linear_value, cosine_value in [(0.0, 1.0, 1.0), (0.5, 0.6, 0.6), (1.0, 0.2, 0.2)]:
        linear.set_progress(fraction)
        cosine.set_progress(fraction)
        assert linear.value() == pytest.approx(linear_value)
        assert cosine.value() == pytest.approx(cosine_value)
    cosine.set_progress(0.25)
    assert cosine.value() == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))
    learned = AlignmentTemperature(0.5, schedule="learned")
    assert learned().item() == pytest.approx(0.5)
    assert learned().requires_grad
    assert AlignmentTemperature(0.7)() == 0.7
    with pytest.raises(ValueError, match="final temperature"):
        AlignmentTemperature(1.0, schedule="linear")
    with pytest.raises(ValueError, match="schedule must be one of"):
        AlignmentTemperature(1.0, schedule="step")


def test_layer_mapping():
    assert map_layers(12, 4) == [(2, 0), (5, 1), (8, 2), (11, 3)]
    assert map_layers(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert map_layers(3, 2) == [(1, 0), (2, 1)]
    assert map_layers(6, 3, "last") == [(5, 2)]
    assert map_layers(6, 3, [[0, 0], [-1, -1]]) == [(0, 0), (5, 2)]
    assert pair_modules(["t0", "t1"], ["s0"], "uniform") == [("t1", "s0")]
    with pytest.raises(ValueError, match="out of range"):
        map_layers(6, 3, [[6, 0]])
    with pytest.raises(ValueError, match="uniform"):
        map_layers(6, 3, "first")
