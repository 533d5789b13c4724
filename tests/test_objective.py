"""The distillation entry point, temperature schedules and layer mapping."""

import math

import pytest
import timm
import torch

from amad.config.params import LossWeightsConfig
from amad.contracts.method import METHODS, LayerPair
from amad.contracts.task import GroupShape
from amad.distill.capture import capture_attention
from amad.distill.layer_mapping import map_layers, pair_modules
from amad.distill.objective import DistillationObjective
from amad.generation.config import GenerationConfig
from amad.losses.logit import logit_kd_loss
from amad.losses.temperature import AlignmentTemperature
from amad.methods.amad import AmadSettings


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


class ImageClassification:
    """The part of a task the objective uses, for a timm classifier (a task the library does not ship)."""

    def task_loss(self, outputs, batch, config):
        return torch.nn.functional.cross_entropy(outputs["logits"], batch["targets"])

    def output_distillation(self, student_outputs, teacher_targets, batch, temperature):
        return logit_kd_loss(student_outputs["logits"], teacher_targets["logits"], temperature=temperature)

    def attention_masks(self, group, batch):
        return None, None


SETTINGS = {
    "none": {},
    "logit": {},
    "one2one": {"head_mismatch": "mean_pool"},
    "minilm": {"relation_heads": 4, "relations": ("qq", "kk", "vv")},
    "hidden": {"projection": "learned"},
    "amad": {"variant": "kl", "temperature": 1.0, "temperature_schedule": "constant", "final_temperature": None},
    "a2d": {},
    "sequence": {"targets": "replace", "generation": GenerationConfig(3, 10, 1, 1.0, 0)},
}


def run_objective(method_name, settings, weights=(1.0, 1.0, 1.0), *, teacher_heads=4, student_heads=2):
    teacher, student = vit(teacher_heads, 32, 4, 0).eval(), vit(student_heads, 16, 2, 1)
    method_class = METHODS.get(method_name, "method")
    pairs = []
    if method_class.needs.layers:
        teacher_shape = GroupShape(4, teacher_heads, 32, 5, 5, "teacher")
        student_shape = GroupShape(2, student_heads, 16, 5, 5, "student")
        pairs = [
            LayerPair(t, s, "vision_self", teacher_shape, student_shape)
            for t, s in pair_modules([f"blocks.{i}.attn" for i in range(4)], [f"blocks.{i}.attn" for i in range(2)])
        ]
    method = method_class.build(method_class.settings(**settings), pairs)
    objective = DistillationObjective(ImageClassification(), method, LossWeightsConfig(*weights), 2.0)
    images, batch = torch.randn(4, 3, 16, 16), {"targets": torch.tensor([0, 1, 2, 0])}
    needs = method.needs
    flags = {"maps": needs.maps, "qkv": needs.qkv, "hidden": needs.hidden}
    with torch.no_grad(), capture_attention(teacher, [p.teacher for p in pairs], detach=True, **flags) as t_cap:
        teacher_outputs = {"logits": teacher(images)}
    with capture_attention(student, [p.student for p in pairs], **flags) as s_cap:
        student_outputs = {"logits": student(images)}
    output = objective(
        student_outputs=student_outputs,
        teacher_targets=teacher_outputs,
        batch=batch,
        teacher_records=t_cap.records,
        student_records=s_cap.records,
    )
    output.total.backward()
    return output, student, method


@pytest.mark.parametrize("per_method", [False, True], ids=["one-weight", "per-method-weight"])
@pytest.mark.parametrize("method", METHODS.names())
def test_every_registered_method_gives_the_weighted_sum_of_its_terms(method, per_method):
    attention = {name: 3.0 if name == method else 100.0 for name in METHODS.names()} if per_method else 3.0
    output, student, method_module = run_objective(method, SETTINGS[method], (0.5, 2.0, attention))
    terms = output.terms
    expected = 0.5 * terms["task"] + 2.0 * terms.get("output_kd", 0.0) + 3.0 * terms.get("attention", 0.0)
    assert output.total.item() == pytest.approx(expected, rel=1e-6)
    needs = method_module.needs
    assert ("output_kd" in terms) == needs.output_distillation
    assert ("attention" in terms) == needs.layers
    if needs.layers:
        assert {"layer/blocks.0.attn", "layer/blocks.1.attn"} <= set(terms)
        assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    if method == "amad":
        assert set(output.artefacts) == {"blocks.0.attn", "blocks.1.attn"}
        weights = output.artefacts["blocks.1.attn"]
        assert weights.shape == (4, 2)
        torch.testing.assert_close(weights.sum(-1), torch.ones(4))
        assert terms["temperature"] == 1.0
    if method == "hidden":
        assert method_module.projections[0].linear.weight.grad is not None  # widths 16 -> 32: learned
    if method == "a2d":  # each pair's aligner (2 student heads -> 4 teacher heads) trains with the student
        assert [tuple(a.conv.weight.shape) for a in method_module.aligners] == [(4, 2, 1, 1)] * 2
        assert method_module.aligners[1].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["kl", "mse", "token", "projection"])
def test_amad_variants_and_learned_temperature(variant):
    settings = {**SETTINGS["amad"], "variant": variant, "temperature": 0.5, "temperature_schedule": "learned"}
    output, _, method = run_objective("amad", settings)
    assert math.isfinite(output.total.item())
    assert method.temperature.log_temperature.grad is not None
    if variant == "projection":
        assert method.projections[0].linear.weight.grad is not None


def test_layer_methods_need_layer_pairs():
    with pytest.raises(ValueError, match="at least one attention layer pair"):
        METHODS.get("amad", "m").build(AmadSettings(**SETTINGS["amad"]), [])


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
